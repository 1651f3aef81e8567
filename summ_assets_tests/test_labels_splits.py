from __future__ import annotations

from pathlib import Path

import pytest

from summ_assets.core.labels import LabelError, enforce, load_labels, match_labels
from summ_assets.core.splits import assign_split

SECTIONS = [
    {"section_id": "s1", "doc_id": "raw/a.md", "heading_path": "A", "part": 1},
    {"section_id": "s2", "doc_id": "raw/a.md", "heading_path": "A / B", "part": 1},
    {"section_id": "s3", "doc_id": "raw/a.md", "heading_path": "A / Long", "part": 1},
    {"section_id": "s4", "doc_id": "raw/a.md", "heading_path": "A / Long", "part": 2},
]


def _labels(tmp_path: Path, lines: list[str]) -> Path:
    d = tmp_path / "labels"
    d.mkdir()
    (d / "l.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return d


def test_every_label_problem_is_reported_with_file_and_line(tmp_path: Path) -> None:
    d = _labels(
        tmp_path,
        [
            '{"doc": "raw/a.md", "heading_path": "A", "summary": "좋은 요약이다."}',
            '{"doc": "raw/a.md", "heading_path": "A", "summary": "중복이다."}',
            "{not json",
            '{"doc": "raw/a.md", "heading_path": "A / B", "summary": "  "}',
            '{"doc": "raw/a.md", "heading_path": "A / Nope", "summary": "없다."}',
            '{"doc": "raw/zzz.md", "heading_path": "A", "summary": "문서 없음."}',
            '{"doc": "raw/a.md", "heading_path": "A / Long", "summary": "모호하다."}',
            '{"doc": "raw/a.md", "heading_path": "A / Long", "part": 2, "summary": "둘째 부분이다."}',
            '{"doc": "raw/a.md", "summary": "필드 없음."}',
        ],
    )
    rep = load_labels(d, tmp_path)
    matched = match_labels(rep, SECTIONS, {"raw/a.md"})
    assert set(matched) == {"s1", "s4"}
    text = "\n".join(rep.problems)
    assert "labels/l.jsonl:2: duplicate label" in text
    assert "labels/l.jsonl:3: bad JSON" in text
    assert "labels/l.jsonl:4: field 'summary' is empty" in text
    assert "labels/l.jsonl:5: no section matches" in text
    assert "labels/l.jsonl:6: no section matches doc='raw/zzz.md'" in text and "no such document" in text
    assert "labels/l.jsonl:7: 2 sections match" in text
    assert "labels/l.jsonl:9: missing or non-string field(s): heading_path" in text
    assert dict(rep.counts) == {
        "bad_json": 1,
        "empty_summary": 1,
        "bad_field": 1,
        "unmatched": 1,
        "unknown_doc": 1,
        "ambiguous": 1,
        "duplicate": 1,
    }
    with pytest.raises(LabelError, match="7 label problem"):
        enforce(rep, "fail")
    enforce(rep, "warn")


def test_section_id_wins_over_heading_path(tmp_path: Path) -> None:
    d = _labels(
        tmp_path, ['{"doc": "raw/a.md", "heading_path": "wrong", "section_id": "s2", "summary": "x다."}']
    )
    rep = load_labels(d)
    assert set(match_labels(rep, SECTIONS, {"raw/a.md"})) == {"s2"} and not rep.problems


def test_split_is_a_pure_function_of_a_stable_key() -> None:
    keys = [(f"raw/doc{i}.md", f"H / {j}", 1) for i in range(40) for j in range(10)]
    first = {k: assign_split(*k, True, 0.12, 0.08) for k in keys}
    # adding documents (or relabelling others) never moves an existing example
    more = keys + [(f"raw/new{i}.md", "H", 1) for i in range(100)]
    again = {k: assign_split(*k, True, 0.12, 0.08) for k in more}
    assert all(again[k] == v for k, v in first.items())
    share = {s: sum(v == s for v in first.values()) / len(first) for s in ("train", "val", "test_seen")}
    assert 0.06 < share["val"] < 0.18 and 0.03 < share["test_seen"] < 0.13 and share["train"] > 0.7
    assert assign_split("eval/similar/x.md", "H", 1, True, 0.1, 0.1) == "test_similar"
    assert assign_split("eval/new/x.md", "H", 1, True, 0.1, 0.1) == "test_new"
    assert assign_split("raw/x.md", "H", 1, False, 0.1, 0.1) == "unlabelled"


def test_bundled_labels_all_match_the_bundled_corpus() -> None:
    """The corpus we ship is consistent: every label matches exactly one section (demo-profile chunking)."""
    from summ_assets.core.chunking import CharCounter, split_markdown
    from summ_assets.core.documents import discover, read_document
    from summ_assets_tests.conftest import BUNDLED

    sections, docs = [], set()
    for doc_id in discover(BUNDLED).values():
        d = split_markdown(read_document(BUNDLED, doc_id).text, CharCounter(2), doc_id=doc_id, max_tokens=384)
        sections += [s.as_row() for s in d.sections]
        docs.add(doc_id)
    rep = load_labels(BUNDLED / "labels", BUNDLED)
    matched = match_labels(rep, sections, docs)
    assert rep.problems == []
    assert len(docs) >= 40 + 10 and len(matched) >= 400
