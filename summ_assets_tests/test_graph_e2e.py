"""The whole graph on the tiny profile: in-process with a Dagster instance, and through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from summ_assets.definitions import UNPARTITIONED  # noqa: E402
from summ_assets_tests.conftest import REPO, copy_corpus


def _resources(data: Path, art: Path) -> dict:
    from summ_assets.defs.resources import ComputeResource, SummSettings

    return {
        "settings": SummSettings(profile="tiny", data_dir=str(data), artifacts_dir=str(art)),
        "compute": ComputeResource(device="cpu", threads=1),
        "io_manager": dg.FilesystemIOManager(base_dir=str(art / "_dagster_io")),
    }


def materialize_everything(instance: dg.DagsterInstance, resources: dict, data: Path) -> list[str]:
    from summ_assets.core.documents import discover
    from summ_assets.definitions import ASSETS

    by_key = {a.key.to_user_string(): a for a in ASSETS}
    dg.materialize(
        ASSETS,
        selection=[by_key["teacher_base"], by_key["student_base"]],
        instance=instance,
        resources=resources,
    )
    keys = sorted(discover(data))
    new = [k for k in keys if k not in instance.get_dynamic_partitions("documents")]
    instance.add_dynamic_partitions("documents", new)
    for k in new:
        dg.materialize(
            ASSETS,
            selection=[by_key["raw_documents"], by_key["document_sections"]],
            partition_key=k,
            instance=instance,
            resources=resources,
        )
    dg.materialize(
        ASSETS, selection=[by_key[k] for k in UNPARTITIONED], instance=instance, resources=resources
    )
    return new


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("graph")
    data = copy_corpus(tmp / "data")
    art = tmp / "artifacts"
    # a persistent SQLite instance in a temp folder: what DAGSTER_HOME=<tmp> gives the CLI and daemon
    (tmp / "dagster_home").mkdir()
    instance = dg.DagsterInstance.local_temp(str(tmp / "dagster_home"))
    resources = _resources(data, art)
    import socket

    real = socket.socket.connect

    def guarded(self, address):  # noqa: ANN001
        host = address[0] if isinstance(address, tuple) else str(address)
        if isinstance(host, str) and (
            host.startswith("127.") or host in ("localhost", "::1") or host.startswith("/")
        ):
            return real(self, address)
        raise RuntimeError(f"network access attempted: {address}")

    socket.socket.connect = guarded
    try:
        assert os.environ["HF_HUB_OFFLINE"] == "1"
        materialize_everything(instance, resources, data)
    finally:
        socket.socket.connect = real
    return instance, resources, data, art


def _latest(instance: dg.DagsterInstance, key: str):
    ev = instance.get_latest_materialization_event(dg.AssetKey(key))
    assert ev is not None, f"{key} has no materialization"
    return ev.asset_materialization


def test_every_asset_is_materialized_offline(built) -> None:
    instance, _, data, _ = built
    for key in ["teacher_base", "student_base", *UNPARTITIONED]:
        _latest(instance, key)
    parts = instance.get_dynamic_partitions("documents")
    assert len(parts) == 8
    for key in ("raw_documents", "document_sections"):
        assert instance.get_materialized_partitions(dg.AssetKey(key)) == set(parts)


def test_student_folder_loads_as_users_expect_and_summarizes(built) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    instance, *_ = built
    path = _latest(instance, "student_model").metadata["artifact"].value
    model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32, device_map="auto")
    tok = AutoTokenizer.from_pretrained(path)
    enc = tok.apply_chat_template(
        [{"role": "user", "content": "다음 내용을 요약해줘: RAG 시스템은 세 단계다."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**enc, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > enc["input_ids"].shape[1]
    card = (Path(path) / "README.md").read_text()
    assert "teacher_logits" in card and "summary_dataset" in card


def test_teacher_logits_are_parquet_readable_with_pyarrow(built) -> None:
    import pyarrow.parquet as pq

    instance, *_ = built
    meta = _latest(instance, "teacher_logits").metadata
    files = sorted(Path(meta["artifact"].value).glob("part-*.parquet"))
    table = pq.read_table(files[0])
    assert table.num_rows == meta["examples"].value > 0
    assert {"example_key", "token_ids", "logprobs", "tail_logprob"} <= set(table.column_names)
    assert meta["scored_examples"].value == meta["examples"].value


def test_lora_teacher_lowers_val_loss_and_report_exists_everywhere(built) -> None:
    instance, *_ = built
    t = _latest(instance, "teacher_adapter").metadata
    assert t["val_loss"].value < t["base_val_loss"].value
    ev = _latest(instance, "evaluation_report").metadata
    folder = Path(ev["artifact"].value)
    report = json.loads((folder / "report.json").read_text())
    assert set(report["tables"]) == {"val", "test_seen", "test_similar", "test_new"}
    assert set(report["tables"]["val"]) == {"teacher", "student", "baseline", "student_base"}
    assert (folder / "report.md").read_text().startswith("# Evaluation report (tiny)")
    assert "## val" in ev["report"].value
    assert (folder / "predictions.parquet").exists() and (folder / "rougeLsum_f.png").stat().st_size > 1000
    assert isinstance(ev["val/student/rougeLsum_f"].value, float)


def test_seqkd_summaries_teach_only_the_distilled_student_for_the_same_steps(built) -> None:
    instance, *_ = built
    pseudo = _latest(instance, "teacher_pseudo_summaries").metadata
    student = _latest(instance, "student_model").metadata
    baseline = _latest(instance, "student_baseline").metadata
    assert pseudo["examples"].value > 0  # the corpus has sections without labels
    assert student["train_examples"].value == baseline["train_examples"].value + pseudo["examples"].value
    # same optimizer budget (either may stop earlier on val ROUGE-L)
    assert student["planned_steps"].value == baseline["planned_steps"].value


def test_rematerializing_with_same_inputs_keeps_data_versions(built) -> None:
    """Idempotent: same inputs -> same content-addressed folders and data versions (nothing downstream stale)."""
    from summ_assets.definitions import ASSETS
    from summ_assets.defs.staleness import resolver, status_of

    instance, resources, _, _ = built
    res = resolver(instance, ASSETS)
    assert [k for k in UNPARTITIONED if status_of(res, k)[0] != "fresh"] == []
    before = _latest(instance, "summary_dataset").tags["dagster/data_version"]
    by_key = {a.key.to_user_string(): a for a in ASSETS}
    dg.materialize(
        ASSETS,
        selection=[by_key["corpus_manifest"], by_key["summary_dataset"]],
        instance=instance,
        resources=resources,
    )
    assert _latest(instance, "summary_dataset").tags["dagster/data_version"] == before
    res = resolver(instance, ASSETS)
    assert status_of(res, "teacher_adapter")[0] == "fresh"


@pytest.mark.slow
def test_cli_refresh_end_to_end_then_second_run_skips_everything(tmp_path: Path) -> None:
    data = copy_corpus(
        tmp_path / "data",
        [
            "raw/ko-rag-pipeline.md",
            "raw/ko-git-branching.md",
            "eval/similar/ko-feature-store.md",
            "eval/new/ko-meeting-minutes.md",
        ],
    )
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster_home" / "dagster.yaml").read_text())
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "SUMM_PROFILE": "tiny",
        "SUMM_DATA": str(data),
        "SUMM_ARTIFACTS": str(tmp_path / "art"),
    }
    exe = Path(sys.executable).with_name("summ-assets")
    first = subprocess.run(
        [str(exe), "refresh"], env=env, cwd=REPO, capture_output=True, text=True, timeout=900
    )
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    assert "promoted_student: missing" in first.stdout
    second = subprocess.run(
        [str(exe), "refresh"], env=env, cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert second.returncode == 0, second.stdout[-3000:]
    assert "-> materializing" not in second.stdout
    assert "0 to (re)ingest, 4 up to date (skipped)" in second.stdout
    inst = dg.DagsterInstance.from_config(str(home))
    for key in ["teacher_base", *UNPARTITIONED]:
        assert inst.get_latest_materialization_event(dg.AssetKey(key)) is not None


def test_code_version_change_makes_exactly_it_and_its_descendants_stale(built) -> None:
    from summ_assets.definitions import ASSETS
    from summ_assets.defs.staleness import resolver, stale_plan, status_of

    instance, *_ = built
    changed = [
        a.map_asset_specs(lambda s: s.replace_attributes(code_version="bumped"))
        if a.key.to_user_string() == "teacher_logits"
        else a
        for a in ASSETS
    ]
    res = resolver(instance, changed)
    plan = stale_plan(instance, changed, ["teacher_base", "student_base", *UNPARTITIONED])
    stale = {k for k, (st, _) in plan.items() if st != "fresh"}
    assert stale == {"teacher_logits", "student_model", "evaluation_report", "promoted_student"}
    assert plan["student_model"] == ("pending", ["upstream teacher_logits will change"])
    assert status_of(res, "teacher_logits")[1] == ["code: has a new code version"]


def _tick(sensor, instance, resources):  # noqa: ANN001, ANN202
    """One sensor evaluation; a SkipReason becomes an empty result."""
    out = sensor(dg.build_sensor_context(instance=instance, resources=resources))
    if isinstance(out, dg.SkipReason):
        return dg.SensorResult(run_requests=[], dynamic_partitions_requests=[])
    return out


def test_sensor_registers_one_new_document_and_its_run_rechunks_only_it(built) -> None:
    """New file -> one partition + one run; that run re-chunks exactly one document; a second tick is quiet."""
    from summ_assets.definitions import ASSETS, defs
    from summ_assets.defs.automation import new_data_sensor
    from summ_assets_tests.conftest import BUNDLED

    instance, resources, data, _ = built
    sections = dg.AssetKey("document_sections")

    def n_section_materializations() -> int:
        return len(instance.fetch_materializations(sections, limit=1000).records)

    before = n_section_materializations()
    quiet = _tick(new_data_sensor, instance, resources)
    assert not quiet.run_requests and not quiet.dynamic_partitions_requests

    baseline = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    new_doc = "raw/ko-ci-pipeline.md"
    (data / new_doc).write_bytes((BUNDLED / new_doc).read_bytes())
    tick = _tick(new_data_sensor, instance, resources)
    (add,) = tick.dynamic_partitions_requests
    assert len(add.partition_keys) == 1 and add.partition_keys[0].startswith("raw_ko-ci-pipeline.md-")
    assert [r.partition_key for r in tick.run_requests] == list(add.partition_keys)
    instance.add_dynamic_partitions("documents", list(add.partition_keys))
    by_key = {a.key.to_user_string(): a for a in ASSETS}
    dg.materialize(
        ASSETS,
        selection=[by_key["raw_documents"], by_key["document_sections"]],
        partition_key=tick.run_requests[0].partition_key,
        instance=instance,
        resources=resources,
    )
    assert n_section_materializations() == before + 1
    again = _tick(new_data_sensor, instance, resources)
    assert not again.run_requests and not again.dynamic_partitions_requests
    # the model half sees the new sections through the manifest's automation condition
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=baseline.cursor)
    requested = {
        k
        for k in ["raw_documents", "document_sections", "teacher_base", "student_base", *UNPARTITIONED]
        if result.get_num_requested(dg.AssetKey(k))
    }
    assert "corpus_manifest" in requested
    assert not requested & {"raw_documents", "document_sections", "teacher_base", "student_base"}


def _tree_hash(root: Path) -> dict[str, str]:
    import hashlib

    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_bad_file_fails_only_its_partition_and_data_is_never_written(built) -> None:
    from summ_assets.core.documents import partition_key
    from summ_assets.definitions import ASSETS

    instance, resources, data, _ = built
    (data / "raw" / "broken.md").write_bytes(b"# \xff\xfe broken\n")
    before = _tree_hash(data)
    by_key = {a.key.to_user_string(): a for a in ASSETS}
    good = sorted(instance.get_materialized_partitions(dg.AssetKey("document_sections")))
    bad = partition_key("raw/broken.md")
    instance.add_dynamic_partitions("documents", [bad])
    res = dg.materialize(
        ASSETS,
        selection=[by_key["raw_documents"], by_key["document_sections"]],
        partition_key=bad,
        instance=instance,
        resources=resources,
        raise_on_error=False,
    )
    assert not res.success
    from summ_assets.defs.common import failure_message

    msg = failure_message(res)
    assert "broken.md:1:3: invalid UTF-8" in msg
    manifest = dg.materialize(
        ASSETS, selection=[by_key["corpus_manifest"]], instance=instance, resources=resources
    )
    meta = manifest.asset_materializations_for_node("corpus_manifest")[0].metadata
    assert meta["documents_without_sections"].value == 1
    assert meta["documents"].value == len(good)
    assert _tree_hash(data) == before  # the pipeline never writes under data/


def test_new_training_examples_are_the_only_ones_the_teacher_scores(built) -> None:
    """Cache is incremental: with the same teacher, only examples with new content keys are scored."""
    import pyarrow.parquet as pq

    from summ_assets.definitions import ASSETS
    from summ_assets_tests.conftest import BUNDLED

    instance, resources, data, _ = built
    by_key = {a.key.to_user_string(): a for a in ASSETS}

    def train_ids() -> set[str]:
        folder = _latest(instance, "summary_dataset").metadata["artifact"].value
        return set(pq.read_table(Path(folder) / "train.parquet").column("section_id").to_pylist())

    before = train_ids()
    new_doc = "raw/ko-ci-pipeline.md"  # added by the sensor test, so far without labels
    lines = [
        ln
        for f in sorted((BUNDLED / "labels").glob("*.jsonl"))
        for ln in f.read_text().splitlines()
        if ln.strip() and json.loads(ln)["doc"] == new_doc
    ]
    with open(data / "labels" / "labels.jsonl", "a", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    dg.materialize(
        ASSETS,
        selection=[by_key["corpus_manifest"], by_key["summary_dataset"]],
        instance=instance,
        resources=resources,
    )
    added = train_ids() - before
    assert len(added) >= 3
    # the teacher is not retrained here (same adapter): only the new examples need teacher log-probs
    dg.materialize(ASSETS, selection=[by_key["teacher_logits"]], instance=instance, resources=resources)
    meta = _latest(instance, "teacher_logits").metadata
    assert meta["scored_examples"].value == len(added)
    assert meta["reused_examples"].value == meta["examples"].value - len(added)
    assert meta["shards"].value == 2
