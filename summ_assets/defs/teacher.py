"""Teacher half: LoRA fine-tuning, then the teacher log-prob cache.

The bodies live in `summ_assets.stages.teacher` so that the same code runs here (in-process) or on a GPU
machine through Dagster Pipes (`summ_assets.defs.pipes`, switch ``SUMM_LAUNCHER``).
"""

import dagster as dg

from summ_assets.defs.common import GPU_POOL, TEACHER_GROUP, progress_logger, spec_version
from summ_assets.defs.resources import ComputeResource, SummSettings
from summ_assets.defs.stage_io import previous_artifact, run_in_process
from summ_assets.stages.base import shards_from_env
from summ_assets.stages.specs import TEACHER_ADAPTER, TEACHER_LOGITS
from summ_assets.stages.teacher import teacher_adapter_stage, teacher_logits_stage

GROUP = TEACHER_GROUP


@dg.asset(
    group_name=GROUP,
    pool=GPU_POOL,
    code_version=spec_version(TEACHER_ADAPTER),
    kinds={"pytorch", "huggingface"},
    description="LoRA teacher (peft + trl SFTTrainer, loss on summary tokens); adapter + merged model.",
)
def teacher_adapter(
    context: dg.AssetExecutionContext,
    settings: SummSettings,
    compute: ComputeResource,
    teacher_base: dict,
    summary_dataset: str,
) -> dg.Output:
    return run_in_process(
        teacher_adapter_stage,
        compute.configure(settings.get_profile()),
        settings.asset_dir("teacher_adapter"),
        teacher_base,
        summary_dataset,
        progress=progress_logger(context),
        log=context.log.info,
    )


@dg.asset(
    group_name=GROUP,
    pool=GPU_POOL,
    code_version=spec_version(TEACHER_LOGITS),
    kinds={"pytorch", "parquet"},
    description="Sparse teacher log-probs (top-k + tail, or sampled) for every training example, in "
    "Parquet; incremental: only examples with new content keys are scored.",
)
def teacher_logits(
    context: dg.AssetExecutionContext,
    settings: SummSettings,
    compute: ComputeResource,
    teacher_adapter: dict,
    summary_dataset: str,
) -> dg.Output:
    return run_in_process(
        teacher_logits_stage,
        compute.configure(settings.get_profile()),
        settings.asset_dir("teacher_logits"),
        teacher_adapter,
        summary_dataset,
        prev_dir=previous_artifact(context),
        num_shards=shards_from_env(),
        progress=progress_logger(context),
        log=context.log.info,
    )
