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
