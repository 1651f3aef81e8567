"""Stage results <-> Dagster: what an in-process asset returns for a `stages` body, and the inputs a
stage needs from the instance (the previous artifact) and from the resources (the Pipes extras)."""

from collections.abc import Callable
from typing import Any

import dagster as dg
from dagster._core.definitions.metadata.external_metadata import metadata_map_from_external

from summ_assets.defs.resources import ComputeResource, SummSettings
from summ_assets.stages.base import StageError, StageResult, profile_to_dict


def to_output(result: StageResult) -> dg.Output:
    """A `StageResult` as the asset's output: Pipes-format metadata resolved exactly as Dagster
    resolves what a Pipes remote reports, so both paths record the same metadata."""
    return dg.Output(
        result.value,
        metadata=dict(metadata_map_from_external(result.metadata)),
        data_version=dg.DataVersion(result.data_version),
    )


def run_in_process(stage: Callable[..., StageResult | None], *args: Any, **kwargs: Any) -> dg.Output:
    """Run a `stages` body in this process; its `StageError` becomes a `dg.Failure` (the message says
    what to change), its result the asset's output."""
    try:
        result = stage(*args, **kwargs)
    except StageError as exc:
        raise dg.Failure(str(exc)) from exc
    assert result is not None  # one process: rank 0
    return to_output(result)


def previous_artifact(context: dg.AssetExecutionContext) -> str | None:
    """The `artifact` path recorded by this asset's latest materialization (None before the first)."""
    prev = context.instance.get_latest_materialization_event(context.asset_key)
    if prev is None or prev.asset_materialization is None:
        return None
    path = prev.asset_materialization.metadata.get("artifact")
    return str(path.value) if path is not None else None


def stage_extras(
    stage: str,
    settings: SummSettings,
    compute: ComputeResource,
    inputs: dict[str, Any],
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The Pipes extras `summ_assets.stages.teacher.run_stage` reads on the remote side."""
    return {
        "stage": stage,
        "profile": profile_to_dict(compute.configure(settings.get_profile())),
        "asset_root": str(settings.asset_dir(stage)),
        "inputs": inputs,
        "options": options or {},
    }
