"""What went wrong in a run, in full: the product's own error messages and failed checks with numbers.

Dagster wraps a step's exception (`DagsterExecutionStepExecutionError`, ...) and a CLI that prints
the last traceback line shows only the wrapper's first line. Here the run's events are read back from
the instance: each failed step's innermost non-Dagster error, its whole message (every label problem
with file:line, up to a cap, then a count of the rest), and each failed asset check with its metadata
and its description (what it demands).
"""

from __future__ import annotations

from typing import Any

import dagster as dg
from dagster._core.events import DagsterEventType

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


def failure_lines(
    instance: dg.DagsterInstance,
    run_id: str,
    check_descriptions: dict[str, str] | None = None,
    cap: int = MAX_LINES,
) -> list[str]:
    """Lines that say why `run_id` failed: failed checks first (name, numbers, what they demand),
    then every failed step's error in full (capped at `cap` lines each)."""
    out: list[str] = []
    for rec in instance.get_records_for_run(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION).records:
        ev = rec.event_log_entry.dagster_event.event_specific_data
        if ev is None or ev.passed:
            continue
        name = ev.check_name
        out.append(f"check {ev.asset_key.to_user_string()}/{name} FAILED")
        if check_descriptions and name in check_descriptions:
            out.append(f"  requires: {check_descriptions[name]}")
        for key, value in (ev.metadata or {}).items():
            out.append(f"  {key}: {_scalar(value)}")
    for rec in instance.get_records_for_run(run_id, of_type=DagsterEventType.STEP_FAILURE).records:
        event = rec.event_log_entry.dagster_event
        err = _product_error(event.step_failure_data.error)
        if err.cls_name == "DagsterAssetCheckFailedError" and out:
            continue  # the checks above say it with their numbers
        message = err.message.strip()
        first, *rest = message.splitlines() or [err.cls_name]
        lead = first if first.startswith(err.cls_name) else f"{err.cls_name}: {first}"
        out += [f"{event.step_key}: {lead}", *_capped([f"  {line}" for line in rest], cap)]
    return out
