"""Dagster definitions for summ-assets (`workspace.yaml` and `dagster -m summ_assets.definitions`)."""

from __future__ import annotations

import dagster as dg

from summ_assets.defs import automation, evaluation, ingest, models, pipes, seqkd, student, teacher
from summ_assets.defs.common import OWNERS
from summ_assets.defs.resources import default_resources

_ASSETS = [
    models.teacher_base,
    models.student_base,
    ingest.raw_documents,
    ingest.document_sections,
    ingest.corpus_manifest,
    ingest.summary_dataset,
    teacher.teacher_adapter,
    teacher.teacher_logits,
    seqkd.teacher_pseudo_summaries,
    student.student_model,
    student.student_baseline,
    evaluation.evaluation_report,
    evaluation.promoted_student,
]

# the unpartitioned model half, in dependency order (the refresh CLI walks it in this order)
UNPARTITIONED = (
    "corpus_manifest",
    "summary_dataset",
    "teacher_adapter",
    "student_baseline",
    "teacher_logits",
    "teacher_pseudo_summaries",
    "student_model",
    "evaluation_report",
    "promoted_student",
)


def _finish(asset: dg.AssetsDefinition) -> dg.AssetsDefinition:
    """Attributes every asset shares, set here once: owners; the automation condition of the model half."""
    asset = asset.map_asset_specs(lambda spec: spec.replace_attributes(owners=list(OWNERS)))
    if asset.key.to_user_string() in UNPARTITIONED:
        return asset.with_attributes(automation_condition=automation.MODEL_CONDITION)
    return asset


# SUMM_LAUNCHER=pipes|k8s: the heavy assets (same keys) run through Dagster Pipes (defs/pipes.py)
ASSETS = [_finish(a) for a in pipes.swap(_ASSETS)]

defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=[
        evaluation.metric_sanity,
        evaluation.student_not_worse_than_baseline,
        evaluation.student_outputs_not_empty,
    ],
    resources=default_resources(),
    jobs=[automation.ingest_job, automation.train_job],
    sensors=[automation.new_data_sensor, automation.automation_sensor],
    schedules=[automation.nightly_stale_retrain],
    executor=pipes.executor(),  # SUMM_EXECUTOR=k8s: k8s_job_executor, GPU limits on heavy steps
)
