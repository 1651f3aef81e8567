"""`summ-assets refresh`: materialize exactly the stale and missing assets, safely after any crash.

Before anything launches it takes the instance's refresh lock (a second refresh waits for the first,
saying so, instead of training the same assets at the same time) and cleans up runs whose worker was
killed (`defs.orphans`: marked failed, pool slots freed). Each unpartitioned asset then runs through
the real Dagster CLI (`dagster asset materialize`, its step in the run's own process) in the refresh's
process group; while its heavy step waits for a slot of pool `gpu` the holder is named every ~15 s,
and `--wait-timeout` bounds the wait.
A failure prints the product's own error in full (every label problem with file:line; a failed
check's name, numbers and what it demands), read back from the run's events.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from summ_assets.core.offline import use_offline_env

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LOG_LINE = re.compile(
    r" - dagster - (INFO|WARNING|ERROR) - [^ ]+ - ([0-9a-f-]{36}) - (?:\d+ - )?([a-z_]+) - (.*)$"
)
REPORT_EVERY_S = 15.0
LOCK_NAME = ".summ-refresh.lock"


def say(msg: str) -> None:
    print(f"[summ-assets {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class WaitTimeout(RuntimeError):
    """Waited longer than --wait-timeout for a pool slot or for another refresh."""


@contextlib.contextmanager
def refresh_lock(home: Path, wait_timeout: float | None) -> Iterator[None]:
    """One refresh at a time per instance. An OS file lock (released by the kernel when its holder
    dies, so a killed refresh never leaves it behind); a second refresh waits, naming the first."""
    path = Path(home) / LOCK_NAME
    fh = open(path, "a+")
    t0, last = time.time(), 0.0
    try:
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "another process"
                now = time.time()
                if now - last >= REPORT_EVERY_S:
                    last = now
                    say(
                        f"another refresh is running on this instance ({holder}); waiting for it to finish "
                        f"before checking what is stale ({now - t0:.0f}s so far)"
                    )
                if wait_timeout is not None and now - t0 > wait_timeout:
                    raise WaitTimeout(
                        f"another refresh ({holder}) still holds {path} after {wait_timeout:.0f}s "
                        "(--wait-timeout); run again when it has finished"
                    ) from None
                time.sleep(0.5)
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}, since {time.strftime('%H:%M:%S')}\n")
        fh.flush()
        yield
    finally:
        fh.close()


def kill_tree(pid: int) -> None:
    """SIGKILL a process and every process it started (a Dagster run and its step processes)."""
    import psutil

    with contextlib.suppress(psutil.NoSuchProcess):
        root = psutil.Process(pid)
        for proc in [*root.children(recursive=True), root]:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signal.SIGKILL)


def _reader(stream, out: queue.Queue) -> None:  # noqa: ANN001
    for line in stream:
        out.put(line)
    out.put(None)


def _waiting_message(instance, run_id: str | None, pool: str) -> str | None:  # noqa: ANN001
    """'waiting for pool gpu: held by run ... since ...' when a step of our run waits for a slot."""
    from summ_assets.defs.orphans import pool_holders, pool_waiters

    waiting = [step for rid, step in pool_waiters(instance, pool) if run_id is None or rid == run_id]
    if not waiting:
        return None
    holders = [h for h in pool_holders(instance, pool) if h[0] != run_id]
    held = "; ".join(
        f"run {rid[:8]} ({step}) since {time.strftime('%H:%M:%S', time.localtime(since)) if since else '?'}"
        for rid, step, since in holders
    )
    return f"{', '.join(waiting)} waits for a slot of pool '{pool}': held by {held or 'no visible run'}"


def newest_run_of(instance, key: str, since: float) -> str | None:  # noqa: ANN001
    """The id of the newest run created at or after `since` that materializes `key` (the run of a
    `dagster asset materialize` subprocess when its log lines did not name it)."""
    import dagster as dg

    for rec in instance.get_run_records(limit=20):
        created = rec.create_timestamp.timestamp()
        if created + 1.0 < since:
            break
        if dg.AssetKey(key) in (rec.dagster_run.asset_selection or ()):
            return rec.dagster_run.run_id
    return None


def error_block(tail: list[str], cap: int = 40) -> list[str]:
    """The last product error in a subprocess's output with its whole message: the line naming the
    error class and the lines that continue it up to the blank line before its stack trace (every label
    problem, not just the first)."""
    starts = [i for i, t in enumerate(tail) if re.match(r"^[\w.]+(Error|Exception|Failure)\b", t.strip())]
    if not starts:
        return tail[-25:]
    i = starts[-1]
    block = [tail[i].strip()]
    for t in tail[i + 1 :]:
        if not t.strip() or " - dagster - " in t or t.startswith(("Stack Trace:", "Traceback")):
            break
        block.append(t.rstrip())
    return block[: cap + 1]


def run_config_args() -> list[str]:
    """The run config of each `dagster asset materialize`: with Dagster's default executor, the run's one
    step executes in the run's own process (``in_process``), not in a second Python process that loads
    the definitions again (~2-3 s per asset; pool `gpu` slots are claimed the same way). Under
    ``SUMM_EXECUTOR=k8s`` the definitions' executor is kept (each step its own pod)."""
    from summ_assets.defs.pipes import default_executor

    if not default_executor():
        return []
    return ["--config-json", json.dumps({"execution": {"config": {"in_process": {}}}})]


def materialize_one(key: str, instance, wait_timeout: float | None, checks: dict[str, str]) -> int:  # noqa: ANN001
    """One asset through the real Dagster CLI against $DAGSTER_HOME; echoes its log lines, reports
    pool waits, and on failure prints the run's own errors in full."""
    from summ_assets.defs.common import GPU_POOL
    from summ_assets.defs.orphans import clean_orphans
    from summ_assets.defs.run_failures import failure_lines

    exe = Path(sys.executable).with_name("dagster")
    cmd = [str(exe), "asset", "materialize", "-m", "summ_assets.definitions", "--select", key]
    cmd += run_config_args()
    # same process group as the refresh: Ctrl-C (and a kill of the group) reach the Dagster run too
    started = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    assert proc.stdout is not None
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
    tail: list[str] = []
    run_id: str | None = None
    quiet_since = time.time()
    waited = 0.0
    timed_out = False
    while True:
        try:
            line = lines.get(timeout=1.0)
        except queue.Empty:
            line = ""
        if line is None:
            break
        now = time.time()
        if line:
            clean = _ANSI.sub("", line.rstrip())
            tail = (tail + [clean])[-400:]
            m = _LOG_LINE.search(clean)
            if m:
                run_id = run_id or m.group(2)
                if not re.match(r"[A-Z_]{6,} - ", m.group(4)):
                    print(f"    {m.group(3)}: {m.group(4)[:200]}", flush=True)
                    quiet_since, waited = now, 0.0
            continue
        if now - quiet_since >= REPORT_EVERY_S:
            waited += now - quiet_since
            quiet_since = now
            msg = _waiting_message(instance, run_id, GPU_POOL)
            if msg:
                limit = f" (--wait-timeout {wait_timeout:.0f}s)" if wait_timeout is not None else ""
                print(f"    {key}: {msg}; waiting {waited:.0f}s{limit}", flush=True)
                if wait_timeout is not None and waited > wait_timeout:
                    timed_out = True
                    kill_tree(proc.pid)
            else:
                waited = 0.0
    rc = proc.wait()
    if timed_out:
        proc_cleaned = clean_orphans(instance)  # our killed run: failed, its pending claim released
        say(
            f"{key}: gave up waiting for a slot of pool '{GPU_POOL}' after {waited:.0f}s (--wait-timeout); "
            f"{len(proc_cleaned)} run(s) cleaned up. Free the slot (the run holding it) or raise the timeout"
        )
        return 124
    if rc != 0:
        run_id = run_id or newest_run_of(instance, key, started)
        shown = failure_lines(instance, run_id, checks) if run_id else []
        if not shown:
            shown = error_block(tail)
        print("\n".join("    | " + t for t in shown), flush=True)
    return rc


def check_descriptions() -> dict[str, str]:
    """{check name: its description} for every asset check of the definitions."""
    from summ_assets.definitions import ASSETS, CHECKS

    specs = [spec for a in [*ASSETS, *CHECKS] for spec in a.check_specs]
    return {spec.name: spec.description or "" for spec in specs}


def refresh(
    dry_run: bool = False,
    force: tuple[str, ...] = (),
    wait_timeout: float | None = None,
    extra: tuple[str, ...] = (),
) -> int:
    """Materialize exactly the stale and missing assets (plus `force`); say what is skipped and why.
    `extra`: on-demand assets (`definitions.ON_DEMAND`) to bring up to date too, after the model half."""
    use_offline_env()
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        print(
            "DAGSTER_HOME is not set: refresh needs a persistent Dagster instance (see README)",
            file=sys.stderr,
        )
        return 2
    try:
        with refresh_lock(Path(home), wait_timeout):
            return _refresh(dry_run, set(force), wait_timeout, extra)
    except WaitTimeout as exc:
        say(f"refresh stopped: {exc}")
        return 124


def _refresh(dry_run: bool, forced: set[str], wait_timeout: float | None, extra: tuple[str, ...] = ()) -> int:
    import dagster as dg

    from summ_assets.definitions import ASSETS, ON_DEMAND, RESOURCES, UNPARTITIONED
    from summ_assets.defs.orphans import checks_local_runs, clean_orphans, free_slots_of_finished_runs
    from summ_assets.defs.partitions import plan_partitions
    from summ_assets.defs.run_failures import result_failure_lines
    from summ_assets.defs.staleness import resolver, status_of

    instance = dg.DagsterInstance.get()
    resources = RESOURCES
    settings = resources["settings"]
    t0 = time.time()
    failures: list[str] = []
    known = {"teacher_base", "student_base", *UNPARTITIONED, *ON_DEMAND}  # documents follow their files
    unknown = sorted((forced | set(extra)) - known)
    if unknown:
        print(
            f"--force {', '.join(unknown)}: not an unpartitioned asset; choose from {sorted(known)} (a document's "
            "partitions re-ingest when its file changes)",
            file=sys.stderr,
        )
        return 2
    checks = check_descriptions()

    # 0. runs killed mid-step (their pool slots would block every later heavy step)
    if not dry_run and checks_local_runs(instance):
        for orphan in clean_orphans(instance):
            say(orphan.line())
        for run_id in free_slots_of_finished_runs(instance):
            say(f"freed the pool slots still held by finished run {run_id[:8]}")

    # 1. partitions follow the files (the same plan the new-data sensor acts on)
    sync = plan_partitions(instance, settings.data_root, settings.get_profile().data.pool_documents)
    current, add, drop = sync.current, sync.add, sync.drop
    if not dry_run:
        sync.apply(instance)
    say(f"documents: {len(current)} ({len(add)} new partitions, {len(drop)} dropped: files gone)")

    def run_unpartitioned(keys: list[str], force: set[str]) -> bool:
        pending = list(keys)
        while True:
            res = resolver(instance, ASSETS)
            todo = None
            for key in keys:
                st, causes = status_of(res, key)
                if key in forced:
                    st, causes = "forced", ["--force"]
                elif key in force:
                    st, causes = "stale", ["data: document partitions changed"]
                if st == "fresh":
                    continue
                todo = (key, st, causes)
                break
            if todo is None:
                done = [k for k in pending if k not in keys]
                skipped = [k for k in pending if k in keys]
                if skipped:
                    say(
                        f"up to date (skipped): {', '.join(skipped)}"
                        + (f"; ran: {', '.join(done)}" if done else "")
                    )
                return True
            key, st, causes = todo
            say(f"{key}: {st} ({'; '.join(causes)[:160]}) -> materializing")
            if dry_run:
                keys = [k for k in keys if k != key]
                continue
            rc = materialize_one(key, instance, wait_timeout, checks)
            force.discard(key)
            forced.discard(key)
            if rc != 0:
                failures.append(key)
                say(f"{key} FAILED (exit {rc}); downstream assets not run. Details: `make ui` -> Runs")
                return False
            keys = [k for k in keys if k != key]  # the next resolve decides whether downstream is stale

    # 2. models first (the chunker counts tokens with the student's tokenizer)
    if not run_unpartitioned(["teacher_base", "student_base"], set()):
        return 1

    # 3. per-document partitions: new or changed file (the sync plan), or stale (code / tokenizer change)
    res = resolver(instance, ASSETS)
    changed = {c.partition: c.reason for c in sync.changed}
    todo = []
    for pk, doc_id in sorted(current.items(), key=lambda kv: kv[1]):
        if pk in changed:
            todo.append((pk, doc_id, changed[pk]))
            continue
        st, causes = status_of(res, "document_sections", pk)
        st_raw, causes_raw = status_of(res, "raw_documents", pk)
        if st != "fresh" or st_raw != "fresh":
            todo.append((pk, doc_id, "; ".join(causes + causes_raw)[:120]))
    say(f"document partitions: {len(todo)} to (re)ingest, {len(current) - len(todo)} up to date (skipped)")
    if todo and not dry_run:
        from summ_assets.defs.comparison import document_changes
        from summ_assets.defs.ingest import document_sections, raw_documents

        for i, (pk, doc_id, why) in enumerate(todo, 1):
            result = dg.materialize(
                ASSETS,
                selection=[raw_documents, document_sections, document_changes],
                partition_key=pk,
                instance=instance,
                resources=resources,
                raise_on_error=False,
                tags={"summ_assets/trigger": "refresh"},
            )
            lines = [] if result.success else result_failure_lines(result) or ["see the UI"]
            if lines:
                failures.append(doc_id)
            mark = f"FAILED: {lines[0]}" if lines else "ok"
            print(f"    [{i}/{len(todo)}] {doc_id} ({why}) {mark}", flush=True)
            for line in lines[1:]:
                print(f"    | {line}", flush=True)

    # 4. the model half, in dependency order, each only if stale after its upstream ran
    force = {"corpus_manifest"} if (todo or add or drop) else set()
    ok = run_unpartitioned([*UNPARTITIONED, *(k for k in ON_DEMAND if k in extra or k in forced)], force)
    say(
        f"refresh done in {time.time() - t0:.0f}s"
        + (f"; failed: {failures}" if failures else "; all up to date")
    )
    return 0 if ok and not failures else 1
