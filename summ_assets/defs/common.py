"""Names and small helpers every asset module shares: pool, owners, groups, partitions, metadata."""

import json
from typing import Any

import dagster as dg

from summ_assets.core import profiles
from summ_assets.core.spec import AssetSpec

GPU_POOL = "gpu"
# Who answers for every asset (shown in the UI's asset pages); applied once in definitions.py.
OWNERS = ("team:ml-platform",)
DOCUMENTS = dg.DynamicPartitionsDefinition(name="documents")
# assets materialized only when asked for (`summ-assets eval-full`): no automation, not in `make demo`
ON_DEMAND_TAG = "summ_assets/on_demand"

# asset groups (the UI's lanes; automation selects by them)
MODELS_GROUP = "models"
INGEST_GROUP = "ingest"
TEACHER_GROUP = "teacher"
STUDENT_GROUP = "student"
EVALUATION_GROUP = "evaluation"
GROUPS = (MODELS_GROUP, INGEST_GROUP, TEACHER_GROUP, STUDENT_GROUP, EVALUATION_GROUP)


def json_md(obj: Any) -> dg.MetadataValue:
    return dg.MetadataValue.json(json.loads(json.dumps(obj, default=str)))


def progress_logger(context: dg.AssetExecutionContext, every: int = 1):  # noqa: ANN201
    """A `Progress` callable that logs every `every`-th message to the run's event log."""
    counter = {"n": 0}

    def log(msg: str) -> None:
        counter["n"] += 1
        if counter["n"] % every == 0:
            context.log.info(msg)

    return log


def spec_version(spec: AssetSpec) -> str:
    """An asset's Dagster code version: its spec's (`summ_assets.core.spec`) under the current profile.

    A profile is configuration, invisible to Dagster; the spec folds the declared fields' values, the
    prompt version and the decoding settings into the code version, so a changed setting (e.g. the LoRA
    rank) marks exactly the assets that read it as stale, and the artifact key derives from the same
    declaration.
    """
    return spec.code_version(profiles.get_profile())
