"""What went wrong in a run, in full: the product's own error messages and failed checks with numbers.

Dagster wraps a step's exception (`DagsterExecutionStepExecutionError`, ...) and a CLI that prints
the last traceback line shows only the wrapper's first line. Here the run's events are read back from
the instance: each failed step's innermost non-Dagster error, its whole message (every label problem
with file:line, up to a cap, then a count of the rest), and each failed asset check with its metadata
and its description (what it demands).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import dagster as dg

MAX_LINES = 40


def _product_error(err: Any) -> Any:
    """The innermost error that is not one of Dagster's wrappers (the one the product raised)."""
    while err.cause is not None and err.cls_name.startswith("Dagster"):
        err = err.cause
    return err


def _capped(lines: list[str], cap: int) -> list[str]:
    if len(lines) <= cap:
        return lines
    return [*lines[:cap], f"... and {len(lines) - cap} more line(s) (the whole message is in the UI: Runs)"]


def _scalar(value: Any) -> str:
    raw = getattr(value, "value", value)
    if isinstance(raw, float):
        return f"{raw:.4f}"
    return " ".join(str(raw).split())


def event_failure_lines(
    events: Iterable[Any], check_descriptions: dict[str, str] | None = None, cap: int = MAX_LINES
) -> list[str]:
    """Lines that say why a run failed, from its `DagsterEvent`s: failed checks first (name, what they
    demand, their numbers), then every failed step's error in full (capped at `cap` lines each)."""
    events = list(events)
    out: list[str] = []
    for event in events:
        if event.event_type != dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            continue
        ev = event.event_specific_data
        if ev is None or ev.passed:
            continue
        name = ev.check_name
        out.append(f"check {ev.asset_key.to_user_string()}/{name} FAILED")
        if check_descriptions and name in check_descriptions:
            out.append(f"  requires: {check_descriptions[name]}")
        for key, value in sorted((ev.metadata or {}).items()):  # stored events reorder metadata
            out.append(f"  {key}: {_scalar(value)}")
    for event in events:
        if not event.is_step_failure:
            continue
        err = _product_error(event.step_failure_data.error)
        if err.cls_name == "DagsterAssetCheckFailedError" and out:
            continue  # the checks above say it with their numbers
        message = err.message.strip()
        first, *rest = message.splitlines() or [err.cls_name]
        lead = first if first.startswith(err.cls_name) else f"{err.cls_name}: {first}"
        out += [f"{event.step_key}: {lead}", *_capped([f"  {line}" for line in rest], cap)]
    return out


def failure_lines(
    instance: dg.DagsterInstance,
    run_id: str,
    check_descriptions: dict[str, str] | None = None,
    cap: int = MAX_LINES,
) -> list[str]:
    """`event_failure_lines` of a run read back from the instance (a run of another process)."""
    kinds = {dg.DagsterEventType.ASSET_CHECK_EVALUATION, dg.DagsterEventType.STEP_FAILURE}
    records = instance.get_records_for_run(run_id, of_type=kinds).records
    return event_failure_lines((r.event_log_entry.dagster_event for r in records), check_descriptions, cap)


def result_failure_lines(result: dg.ExecuteInProcessResult, cap: int = MAX_LINES) -> list[str]:
    """`event_failure_lines` of an in-process run (`dg.materialize(..., raise_on_error=False)`)."""
    return event_failure_lines(result.all_events, cap=cap)
