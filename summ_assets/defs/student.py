"""Student half: the distilled student (data + cached teacher logits) and its CE-only baseline.

Declarations only: the body is `summ_assets.stages.student.student_stage`, what each asset depends on
is its spec in `summ_assets.stages.specs`.
"""

import dagster as dg

from summ_assets.defs.common import GPU_POOL, STUDENT_GROUP, progress_logger, spec_version
from summ_assets.defs.resources import ComputeResource, SummSettings
from summ_assets.defs.stage_io import run_in_process
from summ_assets.stages.specs import STUDENT_BASELINE, STUDENT_MODEL
from summ_assets.stages.student import student_stage


@dg.asset(
    group_name=STUDENT_GROUP,
    pool=GPU_POOL,
    code_version=spec_version(STUDENT_MODEL),
    kinds={"pytorch", "huggingface"},
    description="The student distilled from data + cached teacher logits (alpha*T^2*KL + (1-alpha)*CE), "
    "plus the teacher's summaries of unlabelled sections (sequence-level KD).",
)
def student_model(
    context: dg.AssetExecutionContext,
    settings: SummSettings,
    compute: ComputeResource,
    student_trimmed_base: dict,
    summary_dataset: str,
    teacher_logits: dict,
    teacher_pseudo_summaries: dict,
) -> dg.Output:
    return run_in_process(
        student_stage,
        STUDENT_MODEL.view(compute.configure(settings.get_profile(), log=context.log)),
        settings.asset_dir("student_model"),
        student_trimmed_base,
        summary_dataset,
        teacher_logits,
        teacher_pseudo_summaries,
        progress=progress_logger(context),
        log=context.log.info,
        warn=context.log.warning,
    )


@dg.asset(
    group_name=STUDENT_GROUP,
    pool=GPU_POOL,
    code_version=spec_version(STUDENT_BASELINE),
    kinds={"pytorch", "huggingface"},
    description="The same student, data, steps and learning rate, CE only: what distillation must beat.",
)
def student_baseline(
    context: dg.AssetExecutionContext,
    settings: SummSettings,
    compute: ComputeResource,
    student_trimmed_base: dict,
    summary_dataset: str,
) -> dg.Output:
    return run_in_process(
        student_stage,
        STUDENT_BASELINE.view(compute.configure(settings.get_profile(), log=context.log)),
        settings.asset_dir("student_baseline"),
        student_trimmed_base,
        summary_dataset,
        progress=progress_logger(context),
        log=context.log.info,
    )
