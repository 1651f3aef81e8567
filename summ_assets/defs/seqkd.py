"""Sequence-level KD: the teacher summarizes the sections nobody labelled, and scores its own summaries.

New documents often arrive without reference summaries. Their sections still teach the student: the
teacher's greedy summary becomes the target (Kim & Rush, 2016) and the teacher's sparse log-probs on
it (same format and spec as `teacher_logits`) feed the token-level KD term. Only the distilled
student uses these examples; the CE baseline has no teacher and trains on the labelled data alone
(for the same number of optimizer steps, so the comparison is not a budget difference).
The body is `summ_assets.stages.seqkd.pseudo_summaries_stage`.
"""

import dagster as dg

from summ_assets.defs.common import GPU_POOL, TEACHER_GROUP, progress_logger, spec_version
from summ_assets.defs.resources import ComputeResource, SummSettings
from summ_assets.defs.stage_io import run_in_process
from summ_assets.stages.seqkd import pseudo_summaries_stage
from summ_assets.stages.specs import TEACHER_PSEUDO_SUMMARIES


@dg.asset(
    group_name=TEACHER_GROUP,
    pool=GPU_POOL,
    code_version=spec_version(TEACHER_PSEUDO_SUMMARIES),
    kinds={"pytorch", "parquet"},
    description="Sequence-level KD data: the teacher's greedy summaries of the unlabelled sections, with "
    "the teacher's sparse log-probs on them (same cache format as teacher_logits).",
)
def teacher_pseudo_summaries(
    context: dg.AssetExecutionContext,
    settings: SummSettings,
    compute: ComputeResource,
    summary_dataset: str,
    teacher_adapter: dict,
) -> dg.Output:
    return run_in_process(
        pseudo_summaries_stage,
        compute.configure(settings.get_profile(), log=context.log),
        settings.asset_dir("teacher_pseudo_summaries"),
        summary_dataset,
        teacher_adapter,
        progress=progress_logger(context),
        log=context.log.info,
    )
