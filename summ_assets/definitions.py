"""Dagster definitions for summ-assets (`workspace.yaml` and `dagster -m summ_assets.definitions`)."""

from __future__ import annotations

import dagster as dg

from summ_assets.defs import (
    automation,
    comparison,
    evaluation,
    generations,
    ingest,
    models,
    pipes,
    seqkd,
    student,
    teacher,
    vocab,
)
from summ_assets.defs.common import OWNERS
from summ_assets.defs.graph import model_half, on_demand
from summ_assets.defs.resources import default_resources

_ASSETS = [
    *dg.load_assets_from_modules(
        [models, ingest, comparison, teacher, seqkd, vocab, student, generations, evaluation]
    ),
]

# the unpartitioned model half, in topological order (the refresh CLI walks it in this order)
UNPARTITIONED = model_half(_ASSETS)
# materialized only when asked for (`summ-assets eval-full`), after the model half
ON_DEMAND = on_demand(_ASSETS)


def _finish(asset: dg.AssetsDefinition) -> dg.AssetsDefinition:
    """Attributes every asset shares, set here once: owners; the automation condition of the model half."""
    asset = asset.map_asset_specs(lambda spec: spec.replace_attributes(owners=list(OWNERS)))
    if asset.key.to_user_string() in UNPARTITIONED:
        return asset.with_attributes(automation_condition=automation.MODEL_CONDITION)
    return asset


# SUMM_LAUNCHER=pipes|k8s: the heavy assets (same keys) run through Dagster Pipes (defs/pipes.py)
ASSETS = [_finish(a) for a in pipes.swap(_ASSETS)]
RESOURCES = {**default_resources(), **pipes.pipes_resources()}
CHECKS = dg.load_asset_checks_from_modules([evaluation])  # the gates; labels_valid sits on its asset

defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=CHECKS,
    resources=RESOURCES,
    jobs=[automation.ingest_job, automation.train_job],
    sensors=[automation.new_data_sensor, automation.automation_sensor, automation.dead_run_cleanup],
    schedules=[automation.nightly_stale_retrain],
    executor=pipes.executor(ASSETS),  # SUMM_EXECUTOR=k8s: k8s_job_executor, GPU limits on pool-gpu steps
)
