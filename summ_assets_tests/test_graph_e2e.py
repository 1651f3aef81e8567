"""The whole graph on the tiny profile: in-process with a Dagster instance, and through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from summ_assets.definitions import UNPARTITIONED
from summ_assets.defs import automation
from summ_assets_tests.helpers import (
    BUNDLED,
    REPO,
    copy_corpus,
    graph_resources,
    ingest_partition,
    network_blocked,
)

# the whole tiny graph materialized once per module (`built`), then automation ticks and re-runs on it
pytestmark = pytest.mark.slow


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
        ingest_partition(instance, resources, k)
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
    resources = graph_resources(data, art)
    # audit every split read of the build (test_no_test_set_reaches_a_decision)
    os.environ["SUMM_SPLIT_READ_LOG"] = str(tmp / "split_reads.jsonl")
    # record every profile field each asset reads (test_each_asset_reads_exactly_what_its_spec_declares)
    os.environ["SUMM_SPEC_READ_LOG"] = str(tmp / "spec_reads.jsonl")
    try:
        assert os.environ["HF_HUB_OFFLINE"] == "1"
        with network_blocked():
            materialize_everything(instance, resources, data)
    finally:
        del os.environ["SUMM_SPLIT_READ_LOG"]
        del os.environ["SUMM_SPEC_READ_LOG"]
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
    assert (folder / "predictions.parquet").exists() and (folder / "scores.png").stat().st_size > 1000
    assert isinstance(ev["val/student/rougeLsum_f"].value, float)
    assert ev["charts"].value.count("](data:image/png;base64,") == 2  # the charts render in the UI
    assert set(report["gates"]) == {
        "student_vs_baseline",
        "student_vs_promoted",
        "student_outputs_not_empty",
        "student_not_degenerate",
        "metric_sanity",
    }
    assert report["sets"]["val"]["role"].startswith("used for selection")
    c = report["comparisons"]["val"]["student vs baseline"]
    assert 0 <= c["p_value"] <= 1 and c["low"] <= c["mean_diff"] <= c["high"] and c["mde"] >= 0
    assert report["sanity"]["rouge_self"] > 0.999


def test_no_test_set_reaches_a_sweep_selection_or_gate_path(built) -> None:
    """Every read of a split during the build is logged (SUMM_SPLIT_READ_LOG) with its call stack: the
    test sets are read only by `core.generation_store.evaluation_rows`, which feeds generation and scoring
    (the claims); training, early stopping, selection and the gates read train / val / unlabelled only."""
    _, _, _, art = built
    reads = [json.loads(line) for line in (art.parent / "split_reads.jsonl").read_text().splitlines()]
    test_reads = [r for r in reads if r["split"].startswith("test_")]
    assert test_reads and {r["caller"] for r in test_reads} == {
        "summ_assets.core.generation_store.evaluation_rows"
    }
    decision_code = (
        "summ_assets.core.kd",
        "summ_assets.core.lora",
        "summ_assets.core.early_stopping",
        "summ_assets.core.gates",
        # every training / selection stage (stages.generations and stages.evaluation produce the claims)
        "summ_assets.stages.student",
        "summ_assets.stages.teacher",
        "summ_assets.stages.seqkd",
        "summ_assets.stages.vocab",
        "summ_assets.stages.models",
    )
    for r in test_reads:
        assert not any(f.startswith(decision_code) for f in r["stack"]), r
    # the log sees the decision paths too (it is not blind): training read train and val
    assert {"train", "val"} <= {
        r["split"] for r in reads if r["caller"].startswith("summ_assets.stages.student")
    }


# declared fields that a tiny run does not reach, each with the branch that reads it
BRANCH_ONLY = {
    "teacher.target_modules": "the students read it only with student.train_mode = 'lora'",
    "student.lora_r": "read only with student.train_mode = 'lora'",
    "student.lora_alpha": "read only with student.train_mode = 'lora'",
    "eval.sample_models": "read only under SUMM_EVAL_SCOPE=sample with a test_sample (tiny scores all)",
    "eval.sample_val_models": "read only under SUMM_EVAL_SCOPE=sample with a test_sample (tiny scores all)",
}
# evaluation_report generates the promoted student's val outputs only when that is another model
REPORT_GENERATION_ONLY = {
    "data.max_prompt_tokens",
    "eval.batch_size",
    "eval.do_sample",
    "eval.speed_batch",
    "eval.speed_tokens",
    "eval.max_new_tokens",
    "eval.no_repeat_ngram_size",
    "eval.repetition_penalty",
    "eval.one_sentence",
    "eval.sample_models",
    "eval.sample_val_models",
    "dtype",
}


def test_each_asset_reads_exactly_what_its_spec_declares(built, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read of an undeclared field fails the run itself (the profile view raises); here the other half:
    every declared field is read by the tiny build, except the branch-only ones named above."""
    from summ_assets.core.spec import RUNTIME
    from summ_assets.definitions import ASSETS, ON_DEMAND
    from summ_assets.stages.specs import SPECS

    instance, resources, _, art = built
    # the on-demand assets too (what `make eval-full` runs), recorded into the same log
    monkeypatch.setenv("SUMM_SPEC_READ_LOG", str(art.parent / "spec_reads.jsonl"))
    on_demand = [a for a in ASSETS if a.key.to_user_string() in ON_DEMAND]
    dg.materialize(ASSETS, selection=on_demand, instance=instance, resources=resources)
    reads: dict[str, set[str]] = {}
    for line in (art.parent / "spec_reads.jsonl").read_text().splitlines():
        r = json.loads(line)
        reads.setdefault(r["asset"], set()).add(r["field"])
    assert set(reads) <= set(SPECS)
    for name, spec in SPECS.items():
        got = reads.get(name, set()) - set(RUNTIME) - {f for f, _ in spec.fixed}  # pinned: not the profile's
        assert got <= set(spec.declared), f"{name} read undeclared {got - set(spec.declared)}"
        allowed = set(BRANCH_ONLY) | (REPORT_GENERATION_ONLY if name == "evaluation_report" else set())
        if name == "evaluation_report_full":  # a model loads only for rows the store lacks (tiny: none)
            allowed |= {"dtype", "eval.batch_size", "eval.speed_batch", "eval.speed_tokens"}
        unread = set(spec.declared) - got - allowed
        assert not unread, f"{name} declares fields the build never read: {sorted(unread)}"


def test_seqkd_summaries_teach_only_the_distilled_student_for_the_same_steps(built) -> None:
    instance, *_ = built
    pseudo = _latest(instance, "teacher_pseudo_summaries").metadata
    student = _latest(instance, "student_model").metadata
    baseline = _latest(instance, "student_baseline").metadata
    assert pseudo["examples"].value > 0  # the corpus has sections without labels
    # (a trimmed student leaves out the teacher summaries that use a token it does not keep: counted)
    joined, left_out = student["seqkd_examples"].value, student["seqkd_left_out"].value
    assert joined + left_out == pseudo["examples"].value
    assert student["train_examples"].value == baseline["train_examples"].value + joined
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


def test_the_full_evaluation_is_a_separate_result_and_nothing_is_unsynced_after_both(built) -> None:
    """`make demo` then `make eval-full`: both reports exist, and no asset is stale or unsynced (the two
    scopes used to make each other stale through the code versions)."""
    from summ_assets.definitions import ASSETS, ON_DEMAND
    from summ_assets.defs.staleness import resolver, status_of

    instance, resources, _, _ = built
    by_key = {a.key.to_user_string(): a for a in ASSETS}
    sampled_before = _latest(instance, "evaluation_report").metadata["artifact"].value
    dg.materialize(
        ASSETS, selection=[by_key["evaluation_report_full"]], instance=instance, resources=resources
    )
    full = _latest(instance, "evaluation_report_full")
    report = json.loads((Path(full.metadata["artifact"].value) / "report.json").read_text())
    assert report["scope"] == "full" and set(report["models"]) == {
        "teacher",
        "student",
        "baseline",
        "student_base",
    }
    assert report["sets"]["test_new"]["n"] == report["sets"]["test_new"]["n_total"]
    # the sampled report is still the latest of its own asset, and nothing is stale
    assert _latest(instance, "evaluation_report").metadata["artifact"].value == sampled_before
    res = resolver(instance, ASSETS)
    keys = ["teacher_base", "student_base", *UNPARTITIONED, *ON_DEMAND]
    assert {k: status_of(res, k) for k in keys if status_of(res, k)[0] != "fresh"} == {}
    for key in keys:  # synced: the code version it was built with is the one defined now
        ev = _latest(instance, key)
        defined = {k.to_user_string(): v for a in ASSETS for k, v in a.code_versions_by_key.items()}[key]
        assert ev.tags.get("dagster/code_version") == defined, key


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
    # a retrained student regenerates its own summaries only: the teacher's and baseline's stay fresh
    assert stale == {
        "teacher_logits",
        "student_model",
        "student_generations",
        "evaluation_report",
        "promoted_student",
    }
    assert plan["student_model"] == ("pending", ["upstream teacher_logits will change"])
    assert status_of(res, "teacher_logits")[1] == ["code: has a new code version"]


def _tick(sdefs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None):
    """One evaluation of `new_data_sensor` as the daemon does it (cursor in, cursor out); its partition
    requests are applied to the instance, as the daemon applies them before launching the runs."""
    # the daemon passes an instance ref: partition keys resolve through it. `with`: the context enters
    # the instance it opens (setting Dagster's current defs-state storage) and must exit it, or later
    # tests in this process fail with 'Attempted to resolve undefined DagsterInstance weakref'
    with dg.build_sensor_context(
        instance_ref=instance.get_ref(), cursor=cursor, definitions=sdefs, resources=sdefs.resources
    ) as ctx:
        tick = automation.new_data_sensor.evaluate_tick(ctx)
    for req in tick.dynamic_partitions_requests or []:
        if isinstance(req, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
        else:
            for k in req.partition_keys:
                instance.delete_dynamic_partition(req.partitions_def_name, k)
    return tick


def _sensor_defs(resources: dict) -> dg.Definitions:
    """The shipped assets, checks and jobs, bound to the test's resources (temp data and artifacts)."""
    from summ_assets.definitions import ASSETS, defs

    return dg.Definitions(
        assets=ASSETS,
        asset_checks=list(defs.asset_checks or []),
        jobs=[automation.ingest_job, automation.train_job],
        sensors=[automation.new_data_sensor],
        resources=resources,
    )


def _launch(
    sdefs: dg.Definitions, instance: dg.DagsterInstance, req: dg.RunRequest, raise_on_error: bool = True
) -> bool:
    """Execute a sensor's RunRequest as the daemon launches it: the job it names, its partition, selection
    and tags plus its run key; a run key that already has a run is skipped. Returns whether it ran."""
    if instance.get_runs(filters=dg.RunsFilter(tags={"dagster/run_key": req.run_key}), limit=1):
        return False
    job = sdefs.resolve_job_def(req.job_name)
    job.execute_in_process(
        instance=instance,
        partition_key=req.partition_key,
        asset_selection=list(req.asset_selection) if req.asset_selection else None,
        tags={**req.tags, "dagster/run_key": req.run_key},
        raise_on_error=raise_on_error,
    )
    return True


def _requested(sdefs: dg.Definitions, result) -> dict[str, set]:
    graph = sdefs.resolve_asset_graph()
    return {
        k.to_user_string(): result.get_requested_partitions(k)
        for k in graph.get_all_asset_keys()
        if result.get_num_requested(k)
    }


def _run_automation(sdefs: dg.Definitions, instance: dg.DagsterInstance, cursor, max_ticks: int = 6):
    """Tick the model half's automation conditions and run exactly what each tick requests, as
    `model_half_automation` launches it (the requested assets plus their checks: the daemon expands a
    request to the assets' checks, so blocking gates apply), until a tick requests nothing.
    Returns ([requested per tick], cursor, {check name: passed})."""
    from summ_assets.definitions import ASSETS
    from summ_assets.defs.run_failures import result_failure_lines

    ticks, checks = [], {}
    for _ in range(max_ticks):
        result = dg.evaluate_automation_conditions(defs=sdefs, instance=instance, cursor=cursor)
        cursor = result.cursor
        requested = _requested(sdefs, result)
        ticks.append(requested)
        if not requested:
            return ticks, cursor, checks
        assert all(parts == {None} for parts in requested.values()), requested  # the model half only
        res = dg.materialize(
            [*ASSETS, *(sdefs.asset_checks or [])],
            selection=[dg.AssetKey(k) for k in requested],
            instance=instance,
            resources=sdefs.resources,
            raise_on_error=False,
        )
        checks.update({e.check_name: e.passed for e in res.get_asset_check_evaluations()})
        failed_steps = {e.step_key for e in res.all_events if e.is_step_failure}
        failed_gates = {
            f"{e.asset_key.to_user_string()}_{e.check_name}"
            for e in res.get_asset_check_evaluations()
            if not e.passed
        }
        # a run may stop only at a blocking gate; any other failure is a bug
        assert failed_steps <= failed_gates, "\n".join(result_failure_lines(res))
    raise AssertionError(f"automation still requesting after {max_ticks} ticks: {ticks}")


def _materializations_since(
    instance: dg.DagsterInstance, storage_id: int
) -> dict[tuple[str, str | None], int]:
    """{(asset, partition): count} of every materialization in the event log after `storage_id`."""
    from collections import Counter

    out: Counter = Counter()
    for key in instance.get_asset_keys():
        recs = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, after_storage_id=storage_id), limit=10_000
        ).records
        for r in recs:
            out[(key.to_user_string(), r.asset_materialization.partition)] += 1
    return dict(out)


def _label_lines(doc: str) -> list[str]:
    return [
        ln
        for f in sorted((BUNDLED / "labels").glob("*.jsonl"))
        for ln in f.read_text(encoding="utf-8").splitlines()
        if ln.strip() and json.loads(ln)["doc"] == doc
    ]


def _add_document_with_labels(data: Path, doc: str) -> int:
    (data / doc).write_bytes((BUNDLED / doc).read_bytes())
    lines = _label_lines(doc)
    with open(data / "labels" / "labels.jsonl", "a", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    return len(lines)


def test_new_document_with_labels_retrains_the_chain_once_and_nothing_else_upstream(built) -> None:
    """Issue 7's acceptance line, against the persistent instance: new document + labels -> the sensor
    registers one partition and requests one run that ingests only it; the model half's automation
    then materializes every asset of the chain exactly once (promoted_student only if the blocking
    gates pass); a second sensor tick and a second automation tick request nothing. Counted from the
    event log."""
    from summ_assets.core.documents import partition_key

    instance, resources, data, _ = built
    sdefs = _sensor_defs(resources)
    quiet = _tick(sdefs, instance, None)
    assert quiet.skip_message and not quiet.run_requests and not quiet.dynamic_partitions_requests
    cursor = quiet.cursor
    settled, auto_cursor, _ = _run_automation(sdefs, instance, None)
    assert settled == [{}]  # the fixture's graph is up to date: nothing to do before the change
    ds_before = _latest(instance, "summary_dataset").metadata
    parts_before = set(instance.get_dynamic_partitions("documents"))
    mark = instance.event_log_storage.get_maximum_record_id()

    new_doc = "raw/ko-ci-pipeline.md"
    n_labels = _add_document_with_labels(data, new_doc)
    assert n_labels >= 3
    pk = partition_key(new_doc)
    tick = _tick(sdefs, instance, cursor)
    (add,) = tick.dynamic_partitions_requests
    assert list(add.partition_keys) == [pk]
    assert set(instance.get_dynamic_partitions("documents")) == parts_before | {pk}
    # one run: this document's ingestion. No separate summary_dataset run for the labels: they
    # reach summary_dataset through the manifest, in the chain below (a labels run now would pair
    # them with a manifest that lacks the document, and fail on 'no such document')
    (run,) = tick.run_requests
    assert (run.job_name, run.partition_key, run.asset_selection) == (automation.ingest_job.name, pk, None)
    assert _launch(sdefs, instance, run)
    ingested = {("raw_documents", pk): 1, ("document_sections", pk): 1, ("document_changes", pk): 1}
    assert _materializations_since(instance, mark) == ingested

    ticks, auto_cursor, checks = _run_automation(sdefs, instance, auto_cursor)
    assert set(ticks[0]) == set(UNPARTITIONED)  # the whole chain, requested in one tick
    assert ticks[1:] == [{}]  # ... and the next tick asks for nothing
    # evaluation_report's five blocking gates ran once; promoted_student runs only if they pass (on
    # `tiny` the random student may write mostly empty summaries: student_outputs_not_empty stops it)
    assert checks.pop("labels_valid") is True  # every label line, the new document's included, matched
    assert set(checks) == {
        "metric_sanity",
        "student_not_worse_than_baseline",
        "student_not_worse_than_promoted",
        "student_outputs_not_empty",
        "student_not_degenerate",
    }
    promoted = 1 if all(checks.values()) else 0
    counts = _materializations_since(instance, mark)
    assert counts == {
        **ingested,
        **{(k, None): 1 for k in UNPARTITIONED if k != "promoted_student"},
        **({("promoted_student", None): 1} if promoted else {}),
    }, (counts, checks)
    # the new labels are in: summary_dataset was built once, from the new manifest and the new labels
    ds = _latest(instance, "summary_dataset").metadata
    assert ds["labels_hash"].value != ds_before["labels_hash"].value
    assert ds["labels_hash"].value == automation.labels_hash(resources["settings"])
    assert ds["labels_matched"].value == ds_before["labels_matched"].value + n_labels

    again = _tick(sdefs, instance, tick.cursor)
    assert not again.run_requests and not again.dynamic_partitions_requests and again.skip_message
    still, _, _ = _run_automation(sdefs, instance, auto_cursor)
    assert still == [{}]
    assert _materializations_since(instance, mark) == counts


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
    res = ingest_partition(instance, resources, bad, raise_on_error=False)
    assert not res.success
    from summ_assets.defs.run_failures import result_failure_lines

    msg = "\n".join(result_failure_lines(res))
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

    from summ_assets.core.documents import partition_key
    from summ_assets.definitions import ASSETS

    instance, resources, data, _ = built
    by_key = {a.key.to_user_string(): a for a in ASSETS}

    def train_ids() -> set[str]:
        folder = _latest(instance, "summary_dataset").metadata["artifact"].value
        return set(pq.read_table(Path(folder) / "train.parquet").column("section_id").to_pylist())

    before = train_ids()
    adapter = _latest(instance, "teacher_adapter").tags["dagster/data_version"]
    new_doc = "raw/ko-api-design.md"  # a document of its own: the sensor test's is already trained on
    assert _add_document_with_labels(data, new_doc) >= 3
    pk = partition_key(new_doc)
    instance.add_dynamic_partitions("documents", [pk])
    ingest_partition(instance, resources, pk)
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
    assert _latest(instance, "teacher_adapter").tags["dagster/data_version"] == adapter
    meta = _latest(instance, "teacher_logits").metadata
    assert meta["scored_examples"].value == len(added)
    assert meta["reused_examples"].value == meta["examples"].value - len(added)
    assert meta["shards"].value == 2


def test_labels_reach_summary_dataset_once_and_a_failed_file_does_not_hold_them_back(built) -> None:
    """The sensor's labels path. A labels-only change -> one run of corpus_manifest + summary_dataset.
    Labels of a new document wait for its ingestion; if the model half has not caught up by the next
    tick, the labels run rebuilds the manifest first, so the new labels match. A file whose ingestion
    already failed (the broken one of the test above, when run in order) never blocks them."""
    instance, resources, data, _ = built
    sdefs = _sensor_defs(resources)
    cursor = None
    for _ in range(3):  # let the 'daemon' catch up: launch what the sensor asks, failures included
        tick = _tick(sdefs, instance, cursor)
        cursor = tick.cursor
        if not [r for r in tick.run_requests or [] if _launch(sdefs, instance, r, raise_on_error=False)]:
            break
    settings = resources["settings"]

    def labels_run(t) -> dg.RunRequest:
        (req,) = [r for r in t.run_requests if r.job_name == automation.train_job.name]
        assert req.asset_selection == [dg.AssetKey("corpus_manifest"), dg.AssetKey("summary_dataset")]
        return req

    # 1. labels only: one summary rewritten
    labels = data / "labels" / "labels.jsonl"
    lines = labels.read_text(encoding="utf-8").splitlines()
    row = json.loads(lines[0])
    lines[0] = json.dumps({**row, "summary": row["summary"] + " (수정)"}, ensure_ascii=False)
    labels.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tick = _tick(sdefs, instance, cursor)
    assert not tick.dynamic_partitions_requests
    assert _launch(sdefs, instance, labels_run(tick))
    assert _latest(instance, "summary_dataset").metadata["labels_hash"].value == automation.labels_hash(
        settings
    )
    quiet = _tick(sdefs, instance, tick.cursor)
    assert not [r for r in quiet.run_requests or [] if r.job_name == automation.train_job.name]

    # 2. a new document with labels, and the model half's automation has not run after its ingestion
    matched = _latest(instance, "summary_dataset").metadata["labels_matched"].value
    n = _add_document_with_labels(data, "raw/ko-observability.md")
    first = _tick(sdefs, instance, quiet.cursor)
    (ingest,) = [r for r in first.run_requests if _launch(sdefs, instance, r)]
    assert ingest.job_name == automation.ingest_job.name
    assert all(r.job_name == automation.ingest_job.name for r in first.run_requests)  # labels wait
    second = _tick(sdefs, instance, first.cursor)
    assert _launch(sdefs, instance, labels_run(second))  # manifest first: the new labels all match
    ds = _latest(instance, "summary_dataset").metadata
    assert ds["labels_matched"].value == matched + n and ds["labels_hash"].value == automation.labels_hash(
        settings
    )
    third = _tick(sdefs, instance, second.cursor)
    assert not [r for r in third.run_requests or [] if _launch(sdefs, instance, r)]


def test_a_document_or_labels_changed_and_changed_back_are_picked_up_again(built) -> None:
    """A file edited and then restored: the restore is a change too. Its run key must be new (the
    daemon launches a run key once; reusing the first content's key would leave the edit in place).
    The same for the labels folder."""
    from summ_assets.core.artifacts import sha256_file
    from summ_assets.core.documents import discover, partition_key
    from summ_assets.defs.staleness import latest_data_version

    instance, resources, data, _ = built
    sdefs = _sensor_defs(resources)
    doc = next(d for d in sorted(discover(data).values()) if d != "raw/broken.md")
    path, pk = data / doc, partition_key(doc)
    original = path.read_bytes()
    assert latest_data_version(instance, "raw_documents", pk) == sha256_file(path)[:24]
    cursor, keys = None, []
    edited = original + "\n\n## 추가\n\n새 문단이다.\n".encode()
    for content in (edited, original, edited):  # the third state was seen before: a reused key would skip it
        path.write_bytes(content)
        tick = _tick(sdefs, instance, cursor)
        (req,) = [r for r in tick.run_requests if r.partition_key == pk]
        assert _launch(sdefs, instance, req), f"run key {req.run_key} was already used"
        assert latest_data_version(instance, "raw_documents", pk) == sha256_file(path)[:24]
        cursor = tick.cursor
        keys.append(req.run_key)
    assert len(set(keys)) == 3

    labels = data / "labels" / "labels.jsonl"
    kept = labels.read_text(encoding="utf-8")
    first = kept.splitlines()[0]
    row = json.loads(first)
    edited = kept.replace(
        first, json.dumps({**row, "summary": row["summary"] + " (재수정)"}, ensure_ascii=False)
    )
    for text in (edited, kept):
        labels.write_text(text, encoding="utf-8")
        tick = _tick(sdefs, instance, cursor)
        (req,) = [r for r in tick.run_requests if r.job_name == automation.train_job.name]
        assert _launch(sdefs, instance, req), f"run key {req.run_key} was already used"
        ds = _latest(instance, "summary_dataset").metadata
        assert ds["labels_hash"].value == automation.labels_hash(resources["settings"])
        cursor = tick.cursor


def test_a_changed_instruction_trains_the_baseline_into_a_new_folder_with_the_new_prompt(
    built, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: the students' artifact key once ignored the prompt, so a changed instruction re-ran
    `student_baseline` and handed back the folder trained with the old prompt."""
    from summ_assets.core import prompts
    from summ_assets.core.modelcard import read_model_card
    from summ_assets.definitions import ASSETS

    instance, resources, _, _ = built
    by_key = {a.key.to_user_string(): a for a in ASSETS}
    # the trimmed vocabulary follows the prompt's tokens too (it is rebuilt first)
    chain = [by_key["student_trimmed_base"], by_key["student_baseline"]]
    dg.materialize(ASSETS, selection=chain, instance=instance, resources=resources)  # on today's data
    old = _latest(instance, "student_baseline")
    old_path, old_version = old.metadata["artifact"].value, old.tags["dagster/data_version"]
    monkeypatch.setattr(prompts, "INSTRUCTION", "이 절을 한 문장으로 요약해줘: ")
    new_prompt = prompts.prompt_version()
    dg.materialize(ASSETS, selection=chain, instance=instance, resources=resources)
    new_path = _latest(instance, "student_baseline").metadata["artifact"].value
    assert new_path != old_path
    card = read_model_card(Path(new_path))
    assert new_prompt in card["config"]["code_version"]
    assert new_prompt not in read_model_card(Path(old_path))["config"]["code_version"]
    # the card's load snippet names the final folder, not the temporary one it was built in
    readme = (Path(new_path) / "README.md").read_text(encoding="utf-8")
    assert f'from_pretrained("{new_path}"' in readme and ".tmp-" not in readme
    # back to the old prompt: the old folder (and data version) again, nothing retrained
    monkeypatch.undo()
    dg.materialize(ASSETS, selection=chain, instance=instance, resources=resources)
    back = _latest(instance, "student_baseline")
    assert back.metadata["artifact"].value == old_path
    assert back.tags["dagster/data_version"] == old_version


def test_teacher_labels_never_touch_a_val_or_test_document(built) -> None:
    """The labelling stage reads the unlabelled pool and val (to choose its filter) and nothing else; no
    kept teacher label and no exported one belongs to a val or test document."""
    import pyarrow.parquet as pq

    from summ_assets.core.dataset import read_split
    from summ_assets.core.splits import is_eval_document

    instance, _, _, art = built
    reads = [json.loads(line) for line in (art.parent / "split_reads.jsonl").read_text().splitlines()]
    seqkd = {r["split"] for r in reads if r["caller"].startswith("summ_assets.stages.seqkd")}
    assert "unlabelled" in seqkd and seqkd <= {"unlabelled", "val"}, seqkd
    # the dataset that labelling run read: the newest summary_dataset before it (later tests add documents,
    # which moves the val choice; the labels are re-made only when the chain re-runs)
    pseudo = max(
        instance.fetch_materializations(dg.AssetKey("teacher_pseudo_summaries"), limit=1000).records,
        key=lambda r: r.storage_id,
    )
    before = max(
        (
            r
            for r in instance.fetch_materializations(dg.AssetKey("summary_dataset"), limit=1000).records
            if r.storage_id < pseudo.storage_id
        ),
        key=lambda r: r.storage_id,
    )
    folder = Path(str(pseudo.asset_materialization.metadata["artifact"].value))
    dataset = Path(str(before.asset_materialization.metadata["artifact"].value))
    held = {
        r["doc_id"] for s in ("val", "val_spare", "heldout_unlabelled") for r in read_split(str(dataset), s)
    }
    labelled = [
        json.loads(x)["doc"] for x in (folder / "labels.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    if (folder / "rows.parquet").exists():
        labelled += [r["doc_id"] for r in pq.read_table(folder / "rows.parquet").to_pylist()]
    assert not [d for d in labelled if d in held or is_eval_document(d)]
