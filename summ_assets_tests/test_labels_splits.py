from __future__ import annotations

from pathlib import Path

import pytest

from summ_assets.core.labels import LabelError, enforce, load_labels, match_labels

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


def _sections(docs: list[str], per_doc: int = 10, parts: int = 1) -> list[dict]:
    return [
        {
            "section_id": f"{d}#{j}.{p}",
            "doc_id": d,
            "heading_path": f"H / {j}",
            "part": p,
            "text": f"{d} {j} {p}",
        }
        for d in docs
        for j in range(per_doc)
        for p in range(1, parts + 1)
    ]


def _split(sections: list[dict], unlabelled: set[str] = frozenset(), **cfg: object) -> dict[str, list]:
    from types import SimpleNamespace

    from summ_assets.core.dataset import split_rows
    from summ_assets.core.profiles import DataConfig

    matched = {
        s["section_id"]: SimpleNamespace(summary="요약.", file="l.jsonl", line=1)
        for s in sections
        if s["section_id"] not in unlabelled
    }
    return split_rows(sections, matched, DataConfig(**cfg))


def test_val_is_whole_documents_and_nothing_of_them_trains() -> None:
    docs = [f"raw/doc{i}.md" for i in range(40)] + ["eval/similar/doc3.md", "eval/new/x.md"]
    sections = _sections(docs, parts=2)
    unlabelled = {s["section_id"] for s in sections if s["heading_path"] == "H / 9"}
    by = _split(sections, unlabelled)
    val_docs = {r["doc_id"] for r in by["val"]}
    assert len(by["val"]) >= 40 and len(val_docs) == 3  # 18 labelled sections (9 x 2 parts) per document
    for split in ("train", "test_seen", "unlabelled"):
        assert not val_docs & {r["doc_id"] for r in by[split]}, split
    # every labelled section of a val document is in val; its unlabelled ones are held out too
    assert len(by["val"]) == 18 * len(val_docs)
    assert {r["doc_id"] for r in by["heldout_unlabelled"]} == val_docs | {
        "eval/similar/doc3.md",
        "eval/new/x.md",
    }
    # the original of a test_similar document always stays in train
    assert "raw/doc3.md" not in val_docs and any(r["doc_id"] == "raw/doc3.md" for r in by["train"])
    assert {r["doc_id"] for r in by["test_similar"]} == {"eval/similar/doc3.md"}


def test_test_seen_keeps_the_parts_of_a_section_together_and_is_stable() -> None:
    docs = [f"raw/doc{i}.md" for i in range(40)]
    by = _split(_sections(docs, parts=3))
    seen = {(r["doc_id"], r["heading_path"]) for r in by["test_seen"]}
    assert all(sum(1 for r in by["test_seen"] if (r["doc_id"], r["heading_path"]) == k) == 3 for k in seen)
    train_keys = {(r["doc_id"], r["heading_path"]) for r in by["train"]}
    assert not seen & train_keys
    share = len(by["test_seen"]) / (len(by["train"]) + len(by["test_seen"]))
    assert 0.06 < share < 0.2
    # adding documents that rank after the val documents moves no existing example
    more = _split(_sections(docs + [f"raw/new{i}.md" for i in range(30)], parts=3), val_min_examples=40)
    before = {r["section_id"]: s for s, rows in by.items() for r in rows}
    after = {r["section_id"]: s for s, rows in more.items() for r in rows}
    moved = {k for k, v in before.items() if after[k] != v}
    new_val = {r["doc_id"] for r in more["val"]} - {r["doc_id"] for r in by["val"]}
    assert all(k.split("#")[0] in new_val or before[k] == "val" for k in moved)


def test_val_never_takes_more_than_its_share_of_a_small_pool() -> None:
    by = _split(_sections([f"raw/d{i}.md" for i in range(6)], per_doc=3))
    assert len({r["doc_id"] for r in by["val"]}) == 1 and by["train"]


def test_bundled_corpus_gives_val_and_every_test_set_at_least_40_examples() -> None:
    from summ_assets.core.chunking import CharCounter, split_markdown
    from summ_assets.core.dataset import split_rows
    from summ_assets.core.documents import discover, read_document
    from summ_assets.core.profiles import DEMO
    from summ_assets_tests.helpers import BUNDLED

    sections = []
    for doc_id in discover(BUNDLED).values():
        d = split_markdown(read_document(BUNDLED, doc_id).text, CharCounter(2), doc_id=doc_id, max_tokens=384)
        sections += [s.as_row() for s in d.sections]
    rep = load_labels(BUNDLED / "labels", BUNDLED)
    by = split_rows(sections, match_labels(rep, sections, {s["doc_id"] for s in sections}), DEMO.data)
    sizes = {s: len(by[s]) for s in ("val", "test_seen", "test_similar", "test_new")}
    assert min(sizes.values()) >= 40, sizes
    # power comes from documents: every set behind a decision or a claim spans at least 12 of them
    docs = {s: len({r["doc_id"] for r in by[s]}) for s in sizes}
    assert min(docs.values()) >= 12, docs
    assert {r["doc_id"] for r in by["val_spare"]} <= {r["doc_id"] for r in by["val"]}
    trained = {r["doc_id"] for s in ("train", "unlabelled") for r in by[s]}
    assert not trained & {r["doc_id"] for r in by["val"] + by["val_spare"]}


def test_val_takes_min_documents_and_at_most_n_sections_of_each() -> None:
    from summ_assets.core.splits import choose_val_documents

    labelled = {f"raw/d{i}.md": 10 for i in range(20)} | {"pool/site/p.md": 0}
    assert len(choose_val_documents(labelled, 40, 0.5)) == 4  # 40 sections: 4 whole documents
    assert len(choose_val_documents(labelled, 40, 0.5, min_documents=8)) == 8
    assert len(choose_val_documents(labelled, 40, 0.5, min_documents=8, per_document=2)) == 20 * 0.5
    assert len(choose_val_documents(labelled, 40, 0.3, min_documents=12)) == 6  # the share still caps
    # a pool page without labels neither becomes val nor widens the share
    assert "pool/site/p.md" not in choose_val_documents(labelled, 400, 0.99)


def test_bundled_labels_all_match_the_bundled_corpus() -> None:
    """The corpus we ship is consistent: every label matches exactly one section (demo-profile chunking)."""
    from summ_assets.core.chunking import CharCounter, split_markdown
    from summ_assets.core.documents import discover, read_document
    from summ_assets_tests.helpers import BUNDLED

    sections, docs = [], set()
    for doc_id in discover(BUNDLED).values():
        d = split_markdown(read_document(BUNDLED, doc_id).text, CharCounter(2), doc_id=doc_id, max_tokens=384)
        sections += [s.as_row() for s in d.sections]
        docs.add(doc_id)
    rep = load_labels(BUNDLED / "labels", BUNDLED)
    matched = match_labels(rep, sections, docs)
    assert rep.problems == []
    assert len(docs) >= 40 + 10 and len(matched) >= 400
