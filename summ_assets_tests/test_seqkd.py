"""Sequence-level KD asset: teacher summaries of unlabelled sections."""

from __future__ import annotations

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
