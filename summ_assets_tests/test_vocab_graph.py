"""The trimmed student base in the graph, on a real Dagster instance (tiny profile)."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from summ_assets.core.dataset import read_split
from summ_assets.core.documents import discover
from summ_assets_tests.helpers import copy_corpus, ingest_partition
from summ_assets_tests.helpers import graph_resources as _resources

pytestmark = pytest.mark.slow  # materializes the trimmed student base on a Dagster instance


def _build(instance: dg.DagsterInstance, resources: dict, data: Path) -> dg.AssetMaterialization:
    from summ_assets.definitions import ASSETS

    by_key = {a.key.to_user_string(): a for a in ASSETS}
    new = [k for k in sorted(discover(data)) if k not in instance.get_dynamic_partitions("documents")]
    instance.add_dynamic_partitions("documents", new)
    for k in new:
        ingest_partition(instance, resources, k)
    keys = ["corpus_manifest", "summary_dataset", "student_trimmed_base"]
    dg.materialize(ASSETS, selection=[by_key[k] for k in keys], instance=instance, resources=resources)
    ev = instance.get_latest_materialization_event(dg.AssetKey("student_trimmed_base"))
    assert ev is not None
    return ev.asset_materialization


def test_a_document_whose_tokens_are_kept_does_not_trim_again(tmp_path: Path) -> None:
    from summ_assets.definitions import ASSETS

    data = copy_corpus(tmp_path / "data")
    (tmp_path / "home").mkdir()
    instance = dg.DagsterInstance.local_temp(str(tmp_path / "home"))
    resources = _resources(data, tmp_path / "artifacts")
    by_key = {a.key.to_user_string(): a for a in ASSETS}
    dg.materialize(
        ASSETS,
        selection=[by_key["teacher_base"], by_key["student_base"]],
        instance=instance,
        resources=resources,
    )
    first = _build(instance, resources, data)
    meta = first.metadata
    assert meta["trimmed"].value is True and meta["kept_tokens"].value >= meta["closure"].value
    folder = Path(meta["artifact"].value)
    assert json.loads((folder / "vocab_map.json").read_text())["old_ids"][:3] == [0, 1, 2]
    # a new training-pool document that repeats a training section (no labels): every token is kept
    import pickle

    ds = pickle.loads((tmp_path / "artifacts" / "_dagster_io" / "summary_dataset").read_bytes())
    train = read_split(ds, "train")
    val_before = {r["section_id"] for r in read_split(ds, "val")}
    (data / "raw" / "zz-repeat.md").write_text(train[0]["text"], encoding="utf-8")
    second = _build(instance, resources, data)
    ds2 = pickle.loads((tmp_path / "artifacts" / "_dagster_io" / "summary_dataset").read_bytes())
    assert ds2 != ds  # the dataset did change ...
    assert {r["section_id"] for r in read_split(ds2, "val")} == val_before  # (same val documents)
    # ... the kept set did not: same data version, same folder, nothing trimmed again
    assert second.tags.get("dagster/data_version") == first.tags.get("dagster/data_version")
    assert second.metadata["artifact"].value == str(folder) and second.metadata["reused"].value is True
