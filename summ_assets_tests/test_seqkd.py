"""Sequence-level KD asset: teacher summaries of unlabelled sections."""

from __future__ import annotations

import pytest

from summ_assets.defs.resources import SummSettings


def test_seqkd_off_materializes_an_empty_pseudo_set_without_loading_the_teacher(tmp_path) -> None:
    import dagster as dg
    import pyarrow as pa
    import pyarrow.parquet as pq

    from summ_assets.defs.resources import ComputeResource
    from summ_assets.defs.seqkd import teacher_pseudo_summaries

    dataset = tmp_path / "dataset"
    dataset.mkdir()
    row = {
        "section_id": "s1",
        "doc_id": "raw/a.md",
        "heading_path": "A",
        "part": 1,
        "text": "본문",
        "summary": "",
    }
    pq.write_table(pa.Table.from_pylist([row]), dataset / "unlabelled.parquet")
    settings = SummSettings(profile="demo", artifacts_dir=str(tmp_path / "art"))  # seqkd_max_examples = 0
    out = teacher_pseudo_summaries(
        context=dg.build_asset_context(),
        settings=settings,
        compute=ComputeResource(device="cpu"),
        summary_dataset=str(dataset),
        teacher_adapter={"version": "v", "merged": str(tmp_path / "no-teacher-here")},
    )
    assert out.value["n"] == 0
    assert out.metadata["examples"].value == 0
    assert out.metadata["preview"].value == "no unlabelled sections"


def test_seqkd_never_takes_sections_of_test_documents(tmp_path) -> None:
    """Unlabelled sections of data/eval/ documents are test material: they never become teacher-
    summarized training examples, and the cap counts training sections only."""
    from summ_assets.core.dataset import SplitRow, write_splits
    from summ_assets.stages.seqkd import pseudo_rows_for

    def row(doc: str, i: int) -> SplitRow:
        return SplitRow(
            section_id=f"{doc}#{i}",
            doc_id=doc,
            heading_path=f"h{i}",
            part=0,
            text="본문",
            summary="",
            label_source="",
            split_key=f"{i:04d}{doc}",
        )

    unlabelled = [
        row("eval/new/faq.md", 0),
        row("raw/a.md", 1),
        row("eval/similar/b.md", 2),
        row("raw/c.md", 3),
    ]
    write_splits(tmp_path, {"unlabelled": unlabelled, "train": []})
    assert [r["doc_id"] for r in pseudo_rows_for(str(tmp_path), None)] == ["raw/a.md", "raw/c.md"]
    assert [r["doc_id"] for r in pseudo_rows_for(str(tmp_path), 1)] == ["raw/a.md"]
    assert pseudo_rows_for(str(tmp_path), 0) == []


# --- the filter and the export (core.pseudo_labels) ----------------------------------------------------


def _rec(i: int, summary: str, confidence: float) -> dict:
    from summ_assets.core import pseudo_labels as PL

    row = {
        "section_id": f"s{i}",
        "doc_id": "pool/site/a.md",
        "heading_path": f"A / H{i}",
        "part": 1,
        "text": f"본문 {i}",
    }
    return PL.record(row, summary, summary, confidence, 12)


def test_crafted_bad_labels_are_each_dropped_for_their_reason() -> None:
    from summ_assets.core import pseudo_labels as PL

    good = _rec(0, "캐시는 자주 읽는 데이터를 메모리에 두어 응답 시간을 줄인다.", -0.4)
    loop = _rec(1, "HAVING, WHERE, WHERE, ROWS, ROWS, ORDER BY, ROWS", -0.3)
    tag = _rec(2, "설정은 <i>강조</i> 표시로 끝난다", -0.2)
    unsure = _rec(3, "배포는 카나리 단계를 거쳐 전체로 넓힌다.", -3.5)
    empty = _rec(4, "", -0.1)
    threshold = -1.0
    assert PL.keep(good, threshold) is None
    assert PL.keep(loop, threshold) == "degenerate" and PL.keep(tag, threshold) == "degenerate"
    assert PL.keep(unsure, threshold) == "low_confidence" and PL.keep(empty, threshold) == "empty"
    assert PL.with_flags(loop)["flags"] == ["comma_loop"] and PL.with_flags(tag)["flags"] == ["html_tag"]


def test_the_threshold_is_chosen_on_val_deterministically() -> None:
    from summ_assets.core import pseudo_labels as PL

    # confident labels score well, the least confident fifth scores badly: keeping 80 % wins
    val = [(-0.1 * i, 0.5) for i in range(8)] + [(-5.0, 0.0), (-6.0, 0.0)]
    choice = PL.choose_threshold(val)
    assert choice["kept_share"] == 0.8 and choice["threshold"] == pytest.approx(-0.7)
    assert choice == PL.choose_threshold(list(reversed(val)))
    # confidence that says nothing about quality: every label stays (ties go to the larger share)
    flat = PL.choose_threshold([(-0.1 * i, 0.3) for i in range(10)])
    assert flat["kept_share"] == 1.0 and flat["threshold"] == float("-inf")


def test_exported_labels_load_as_gold_labels(tmp_path) -> None:
    import json

    from summ_assets.core import pseudo_labels as PL
    from summ_assets.core.labels import load_labels, match_labels

    recs = [
        _rec(0, "첫 섹션은 설치 순서를 설명한다.", -0.5),
        _rec(1, "", -0.2),
        _rec(2, "롤 롤 롤 롤 배포", -0.1),
    ]
    out = tmp_path / "labels" / "teacher.jsonl"
    assert PL.export_jsonl(recs, out, -1.0, "teacher:v1") == 2  # the empty one is no label
    lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [x["kept"] for x in lines] == [True, False] and lines[0]["label_source"] == "teacher:v1"
    rep = load_labels(tmp_path / "labels")
    sections = [
        {"section_id": f"s{i}", "doc_id": "pool/site/a.md", "heading_path": f"A / H{i}", "part": 1}
        for i in range(3)
    ]
    assert rep.problems == [] and set(match_labels(rep, sections, {"pool/site/a.md"})) == {"s0", "s2"}


@pytest.mark.slow
def test_a_new_document_labels_only_its_own_sections(tmp_path) -> None:
    """The label store is keyed by section content and teacher version: a second run with one more
    unlabelled document labels that document's sections only; val sections choose the threshold and
    never become training labels."""
    from summ_assets.core.dataset import SplitRow, write_splits
    from summ_assets.core.profiles import PROFILES
    from summ_assets.stages.seqkd import pseudo_summaries_stage
    from summ_assets_tests.helpers import tiny_models

    teacher_dir, _ = tiny_models()

    def row(doc: str, i: int, summary: str = "") -> SplitRow:
        return SplitRow(
            section_id=f"{doc}#{i}",
            doc_id=doc,
            heading_path=f"H{i}",
            part=1,
            text=f"섹션 {i}의 본문은 배포 절차와 검증 단계를 설명한다. 숫자 {i * 7}.",
            summary=summary,
            label_source="",
            split_key=f"{i:04d}{doc}",
        )

    pool = [row("pool/site/a.md", i) for i in range(3)]
    val = [row("raw/v.md", 10 + i, "배포 절차를 설명한다.") for i in range(2)]
    ref = {"version": "teacher-v1", "merged": str(teacher_dir)}
    root = tmp_path / "art"
    said: list[str] = []

    def run(unlabelled: list[SplitRow]):
        folder = tmp_path / f"ds{len(unlabelled)}"
        folder.mkdir()
        write_splits(folder, {"unlabelled": unlabelled, "val": val, "train": []})
        return pseudo_summaries_stage(PROFILES["tiny"], root, str(folder), ref, log=said.append)

    first = run(pool)
    assert first.metadata["labelled_now"]["raw_value"] == 3 + 2
    second = run([*pool, row("pool/site/b.md", 5)])
    assert second.metadata["labelled_now"]["raw_value"] == 1
    assert any("1 sections labelled now, 5 reused" in s for s in said), said
    assert second.metadata["candidate_sections"]["raw_value"] == 4
    import pyarrow.parquet as pq

    rows_file = tmp_path / "art" / second.value["version"] / "rows.parquet"
    if rows_file.exists():
        assert not {r["doc_id"] for r in pq.read_table(rows_file).to_pylist()} & {"raw/v.md"}


def test_the_teacher_key_follows_its_own_train_and_val_rows_only() -> None:
    """A new unlabelled document changes the dataset version, not what the teacher learns from: its key
    (and so its folder) stays, and nothing is retrained or relabelled."""
    import inspect

    from summ_assets.stages import teacher

    train = [{"section_id": "a", "text": "본문", "summary": "요약이다."}]
    val = [{"section_id": "v", "text": "검증", "summary": "검증 요약이다."}]
    same = teacher.training_rows_digest(train, val)
    assert teacher.training_rows_digest([dict(r) for r in train], [dict(r) for r in val]) == same
    assert teacher.training_rows_digest(train, [{**val[0], "summary": "다른 요약이다."}]) != same
    assert teacher.training_rows_digest([], val) != same
    src = inspect.getsource(teacher.teacher_adapter_stage)
    assert '"rows": training_rows_digest(' in src and '"data": summary_dataset' not in src
