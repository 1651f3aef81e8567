"""Runs whose worker died (SIGKILL, OOM kill, power loss): found, marked failed, their pool slots freed.

A killed run stays STARTED in the instance and keeps the slot it claimed in pool `gpu`; with one slot,
every later heavy step then waits forever. Dagster's run monitoring does not notice: the pinned
Dagster's `dg.DefaultRunLauncher` has no worker health check. So the product checks itself, the same way
from the CLI (`summ-assets refresh`, before anything launches) and from a sensor under the daemon:

- a run is *ours to judge* when the instance launches runs on this machine (`dg.DefaultRunLauncher`:
  the CLI's in-process runs and the daemon's subprocess runs alike);
- its worker is the process that wrote the run's RUN_START event (every Dagster event records its
  pid); the worker is *gone* when no process has that pid, or the process holding it started after
  the run did (the pid was reused);
- a gone run is reported failed (`report_run_failed`, with a message naming why) and its concurrency
  slots are freed. Runs of another live process are never touched: two terminals do not kill each
  other's work.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import dagster as dg

from summ_assets.core.processes import alive_since

ACTIVE = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
# a worker that started within this many seconds after its run's start time is the run's own process
_PID_SLACK_S = 5.0


@dataclass(frozen=True)
class OrphanedRun:
    run_id: str
    assets: tuple[str, ...]
    pid: int | None
    last_event_at: float  # epoch seconds of the run's last event (about when it died)

    def line(self, now: float | None = None) -> str:
        ago = (now or time.time()) - self.last_event_at
        what = ", ".join(self.assets) or "no asset"
        return (
            f"cleaned up run {self.run_id[:8]} ({what}): its process {self.pid} is gone, last heard "
            f"from {ago:.0f}s ago; marked failed, pool slots freed"
        )


def checks_local_runs(instance: dg.DagsterInstance) -> bool:
    """Whether this instance's runs are processes on this machine (so a pid check means something)."""
    return isinstance(instance.run_launcher, dg.DefaultRunLauncher)


def worker_pid(instance: dg.DagsterInstance, run_id: str) -> tuple[int | None, float]:
    """(pid of the run's worker, the time of its RUN_START); (None, 0) before the run started."""
    recs = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_START, limit=1).records
    if not recs:
        return None, 0.0
    entry = recs[0].event_log_entry
    return (entry.dagster_event.pid if entry.dagster_event else None), entry.timestamp


def _last_event_at(instance: dg.DagsterInstance, run_id: str) -> float:
    recs = instance.get_records_for_run(run_id, limit=1, ascending=False).records
    return recs[0].event_log_entry.timestamp if recs else 0.0


def find_orphans(instance: dg.DagsterInstance) -> list[OrphanedRun]:
    """STARTING/STARTED runs whose worker process is gone (empty unless `checks_local_runs`)."""
    if not checks_local_runs(instance):
        return []
    out = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=ACTIVE)):
        pid, started = worker_pid(instance, run.run_id)
        if pid is None or alive_since(pid, started, _PID_SLACK_S):
            continue  # not started yet (the launcher still owns it), or alive: not ours to touch
        assets = tuple(sorted(k.to_user_string() for k in (run.asset_selection or ())))
        out.append(OrphanedRun(run.run_id, assets, pid, _last_event_at(instance, run.run_id)))
    return out


def clean_orphans(instance: dg.DagsterInstance) -> list[OrphanedRun]:
    """Mark every orphaned run failed and free its concurrency slots; returns what was cleaned."""
    cleaned = find_orphans(instance)
    for orphan in cleaned:
        run = instance.get_run_by_id(orphan.run_id)
        if run is None or run.status not in ACTIVE:
            continue
        instance.report_run_failed(
            run,
            message=f"the run's worker process {orphan.pid} is gone (killed or crashed); cleaned up by "
            "summ-assets so that its pool slots are free for the next run",
        )
        instance.event_log_storage.free_concurrency_slots_for_run(orphan.run_id)
    return cleaned


def free_slots_of_finished_runs(instance: dg.DagsterInstance) -> list[str]:
    """Free the pool slots still held by runs that have finished (failed, succeeded, canceled): e.g. a
    daemon-launched run whose code server marked it failed after its process died. Dagster's run
    monitoring frees those only `free_slots_after_run_end_seconds` later, and only under the daemon.
    Returns the run ids whose slots were freed (empty unless `checks_local_runs`)."""
    if not checks_local_runs(instance):
        return []
    freed = []
    for run_id in sorted(instance.event_log_storage.get_concurrency_run_ids()):
        run = instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            instance.event_log_storage.free_concurrency_slots_for_run(run_id)
            freed.append(run_id)
    return freed


def pool_holders(instance: dg.DagsterInstance, pool: str) -> list[tuple[str, str, float]]:
    """(run id, step key, since) for every claimed slot of `pool`; since = the run's start time."""
    info = instance.event_log_storage.get_concurrency_info(pool)
    out = []
    for slot in info.claimed_slots:
        rec = instance.get_run_record_by_id(slot.run_id)
        since = rec.start_time if rec is not None and rec.start_time else 0.0
        out.append((slot.run_id, slot.step_key, since))
    return out


def pool_waiters(instance: dg.DagsterInstance, pool: str) -> list[tuple[str, str]]:
    """(run id, step key) of every step waiting for a slot of `pool`."""
    info = instance.event_log_storage.get_concurrency_info(pool)
    return [(s.run_id, s.step_key) for s in info.pending_steps if s.assigned_timestamp is None]
