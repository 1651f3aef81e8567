"""A killed run never blocks, hides or corrupts the next one: real processes, a real instance, `tiny`.

- `summ-assets refresh` killed with SIGKILL (its whole process group) while `teacher_adapter` trains,
  after its first checkpoint: the dead run holds the only slot of pool `gpu`; the next refresh cleans
  it up (one line naming the run), resumes the teacher from the checkpoint, and finishes the graph.
- Two refreshes started at once: one waits for the other (and says so); every asset is materialized
  exactly once (counted from the event log).
- A malformed labels file: the refresh output names every bad line (file:line), not only the first.
- Failed checks and product errors are read back from the run's events in full (`run_failures`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from summ_assets_tests.helpers import REPO, copy_corpus

pytestmark = pytest.mark.slow  # real Dagster runs, daemons and killed processes (make test only)

DOCS = [f"raw/{p.name}" for p in sorted((REPO / "data" / "raw").glob("ko-*.md"))[:12]] + [
    "eval/similar/ko-feature-store.md",
    "eval/new/ko-meeting-minutes.md",
]
EXE = Path(sys.executable).with_name("summ-assets")


def _setup(tmp_path: Path, docs: list[str] = DOCS) -> dict[str, str]:
    data = copy_corpus(tmp_path / "data", docs)
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster_home" / "dagster.yaml").read_text())
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "SUMM_PROFILE": "tiny",
        "SUMM_DATA": str(data),
        "SUMM_ARTIFACTS": str(tmp_path / "art"),
        "PYTHONUNBUFFERED": "1",
    }


def _refresh(env: dict[str, str], log: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(EXE), "refresh", *extra],
        env=env,
        cwd=REPO,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: SIGKILL reaches the Dagster child too
    )


def _materializations(home: str) -> dict[str, int]:
    inst = dg.DagsterInstance.from_config(home)
    out: dict[str, int] = {}
    for rec in inst.get_event_records(
        dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    ):
        key = rec.asset_key.to_user_string() if rec.asset_key else "?"
        out[key] = out.get(key, 0) + 1
    return out


@pytest.mark.slow
def test_refresh_killed_during_teacher_training_is_cleaned_up_and_resumed(tmp_path: Path) -> None:
    env = _setup(tmp_path)
    art = Path(env["SUMM_ARTIFACTS"])
    first = _refresh(env, tmp_path / "first.log")
    deadline = time.time() + 600
    ckpt = None
    while time.time() < deadline and first.poll() is None:
        found = sorted((art / "teacher_adapter" / "_work").glob("*/checkpoint-*/trainer_state.json"))
        if found:
            ckpt = found[0].parent
            break
        time.sleep(0.05)
    assert ckpt is not None, (tmp_path / "first.log").read_text()[-3000:]
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=30)

    inst = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
    started = inst.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
    assert len(started) == 1  # the dead run: still STARTED ...
    assert [s.run_id for s in inst.event_log_storage.get_concurrency_info("gpu").claimed_slots] == [
        started[0].run_id
    ]  # ... and holding the only slot of pool gpu
    assert list((art / "teacher_adapter").glob(".tmp-*"))  # the half-written artifact of the killed run

    second = subprocess.run(
        [str(EXE), "refresh"], env=env, cwd=REPO, capture_output=True, text=True, timeout=900
    )
    out = second.stdout + second.stderr
    assert second.returncode == 0, out[-4000:]
    assert f"cleaned up run {started[0].run_id[:8]} (teacher_adapter)" in out
    assert inst.get_run_by_id(started[0].run_id).status == dg.DagsterRunStatus.FAILURE
    (teacher_dir,) = [p for p in (art / "teacher_adapter").iterdir() if p.is_dir() and p.name != "_work"]
    metrics = json.loads((teacher_dir / "metrics.json").read_text())
    assert metrics["resumed_from"] and Path(metrics["resumed_from"]).name.startswith("checkpoint-")
    assert not list((art / "teacher_adapter").glob(".tmp-*"))  # leftovers of the killed write removed
    assert inst.get_latest_materialization_event(dg.AssetKey("promoted_student")) is not None
    assert inst.event_log_storage.get_concurrency_info("gpu").claimed_slots == []


@pytest.mark.slow
def test_two_refreshes_at_once_build_every_asset_once(tmp_path: Path) -> None:
    env = _setup(tmp_path, DOCS[:3] + DOCS[-2:])
    a = _refresh(env, tmp_path / "a.log")
    time.sleep(0.5)
    b = _refresh(env, tmp_path / "b.log")
    assert a.wait(timeout=900) == 0, (tmp_path / "a.log").read_text()[-3000:]
    assert b.wait(timeout=900) == 0, (tmp_path / "b.log").read_text()[-3000:]
    logs = (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()
    assert "another refresh is running on this instance (pid " in logs
    counts = _materializations(env["DAGSTER_HOME"])
    per_document = ("raw_documents", "document_sections", "document_changes")
    model_half = [k for k in counts if k not in per_document]
    assert model_half and all(counts[k] == 1 for k in model_half), counts
    assert all(counts[k] == 5 for k in per_document), counts  # one per document, not two
    # each CLI run executed its step in the run's own process (`refresh.run_config_args`)
    inst = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
    for run in inst.get_runs():
        engine = [
            r.event_log_entry.message or ""
            for r in inst.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT).records
        ]
        assert any(m.startswith("Executing steps in process") for m in engine), (run.asset_selection, engine)


@pytest.mark.slow
def test_refresh_prints_every_label_problem_with_its_file_and_line(tmp_path: Path) -> None:
    env = _setup(tmp_path, ["raw/ko-rag-pipeline.md"])
    labels = Path(env["SUMM_DATA"]) / "labels"
    for f in labels.glob("*.jsonl"):
        f.unlink()
    (labels / "broken.jsonl").write_text(
        '{"doc": "raw/ko-rag-pipeline.md", "heading_path": "no such heading", "summary": "x"}\n'
        "{not json\n"
        '{"doc": "raw/missing.md", "heading_path": "a", "summary": "y"}\n',
        encoding="utf-8",
    )
    run = subprocess.run(
        [str(EXE), "refresh"], env=env, cwd=REPO, capture_output=True, text=True, timeout=600
    )
    out = run.stdout + run.stderr
    assert run.returncode != 0
    assert "LabelError: 3 label problem(s)" in out
    for line in (1, 2, 3):
        assert f"broken.jsonl:{line}" in out, out[-3000:]
    assert "Fix the label files" in out


def test_failure_lines_show_the_product_error_and_failed_checks_with_numbers(tmp_path: Path) -> None:
    from summ_assets.defs.run_failures import failure_lines, result_failure_lines

    @dg.asset
    def gated() -> int:
        return 1

    @dg.asset_check(asset=gated, blocking=True, description="the score must be at least 0.5")
    def score_high_enough() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=False, metadata={"score": 0.25, "reasons": "0.2500 < 0.5"})

    @dg.asset
    def broken() -> int:
        raise ValueError("first line\n  a.jsonl:1: bad\n  a.jsonl:2: bad\n  a.jsonl:3: bad")

    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        r1 = dg.materialize([gated, score_high_enough], instance=instance, raise_on_error=False)
        lines = failure_lines(instance, r1.run_id, {"score_high_enough": "the score must be at least 0.5"})
        assert lines[0] == "check gated/score_high_enough FAILED"
        assert "  requires: the score must be at least 0.5" in lines
        assert "  score: 0.2500" in lines and "  reasons: 0.2500 < 0.5" in lines
        r2 = dg.materialize([broken], instance=instance, raise_on_error=False)
        lines = failure_lines(instance, r2.run_id, cap=2)
        assert lines[0] == "broken: ValueError: first line"
        assert lines[1:3] == ["    a.jsonl:1: bad", "    a.jsonl:2: bad"]
        assert lines[3].startswith("... and 1 more line(s)")
        # the in-process result's own events say the same (the path `refresh` uses for ingestion)
        assert result_failure_lines(r2, cap=2) == lines
        assert result_failure_lines(r1) == failure_lines(instance, r1.run_id)


def test_a_failed_subprocess_run_is_found_without_its_log_lines_and_its_whole_error_printed(
    tmp_path: Path,
) -> None:
    """CI once printed only the first line of a LabelError: the run id was not read off the CLI's log
    lines, and the fallback kept one line per error. The run is now found on the instance, and the
    fallback keeps the error's whole message."""
    from summ_assets.refresh import error_block, newest_run_of

    (tmp_path / "broken.py").write_text(
        "import dagster as dg\n\n@dg.asset\ndef broken() -> int:\n    raise ValueError('boom')\n"
    )
    home = tmp_path / "home"
    home.mkdir()
    before = time.time()
    run = subprocess.run(
        [str(EXE.with_name("dagster")), "asset", "materialize", "-f", "broken.py", "--select", "broken"],
        env={**os.environ, "DAGSTER_HOME": str(home)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode != 0 and "ValueError: boom" in run.stdout + run.stderr
    instance = dg.DagsterInstance.from_config(str(home))
    (only,) = instance.get_runs()
    assert newest_run_of(instance, "broken", before) == only.run_id
    assert newest_run_of(instance, "other_asset", before) is None
    assert newest_run_of(instance, "broken", time.time() + 60) is None  # older runs are not ours
    tail = [
        "2026-12-03 - dagster - ERROR - job - 1234 - x - STEP_FAILURE - failed",
        "The above exception was caused by the following exception:",
        "summ_assets.core.labels.LabelError: 3 label problem(s) ({'bad_json': 1}):",
        "  labels/broken.jsonl:2: bad JSON",
        "  labels/broken.jsonl:1: no section matches",
        "Fix the label files, or set label strictness to 'warn' to skip bad labels.",
        "",
        "Stack Trace:",
        '  File "labels.py", line 142, in enforce',
        "Error: Materialization failed.",
    ]
    block = error_block(tail)
    assert block[0].startswith("summ_assets.core.labels.LabelError: 3 label problem(s)")
    assert block[1:] == tail[3:6]
    assert error_block(["no error here"]) == ["no error here"]


def _live_run_holding_the_gpu_slot(home: str) -> str:
    """A STARTED run of *this* (live) process that holds the only slot of pool gpu."""
    from dagster._core.events import DagsterEvent, DagsterEventType
    from dagster._core.storage.dagster_run import DagsterRun

    inst = dg.DagsterInstance.from_config(home)
    run = inst.add_run(DagsterRun(job_name="holder", status=dg.DagsterRunStatus.STARTED))
    inst.report_dagster_event(
        DagsterEvent(event_type_value=DagsterEventType.RUN_START.value, job_name="holder"), run.run_id
    )
    inst.event_log_storage.set_concurrency_slots("gpu", 1)  # the shipped default limit, set up front
    assert inst.event_log_storage.claim_concurrency_slot("gpu", run.run_id, "other_heavy_step").is_claimed
    return run.run_id


@pytest.mark.slow
def test_a_step_waiting_for_the_pool_names_the_holder_and_wait_timeout_ends_the_wait(tmp_path: Path) -> None:
    env = _setup(tmp_path, ["raw/ko-rag-pipeline.md", "raw/ko-git-branching.md"])
    holder = _live_run_holding_the_gpu_slot(env["DAGSTER_HOME"])
    run = subprocess.run(
        [str(EXE), "refresh", "--wait-timeout", "20"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = run.stdout + run.stderr
    assert run.returncode != 0
    assert f"waits for a slot of pool 'gpu': held by run {holder[:8]} (other_heavy_step) since" in out, out[
        -3000:
    ]
    assert "gave up waiting for a slot of pool 'gpu'" in out and "(--wait-timeout)" in out
    assert "cleaned up run" not in out.split("gave up")[0]  # a live holder is never touched
    inst = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
    assert inst.get_run_by_id(holder).status == dg.DagsterRunStatus.STARTED
    assert [s.run_id for s in inst.event_log_storage.get_concurrency_info("gpu").claimed_slots] == [holder]
    pending = inst.event_log_storage.get_concurrency_info("gpu").pending_steps
    assert [p.run_id for p in pending] == [holder]  # our abandoned wait left no claim behind
