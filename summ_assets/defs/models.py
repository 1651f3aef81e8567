"""Base models as assets: resolved per profile (built tiny, converted GGUF, pruned, hub/local).

Declarations only: the bodies are `summ_assets.stages.models`.
"""

import dagster as dg

from summ_assets.defs.common import MODELS_GROUP, spec_version
from summ_assets.defs.resources import SummSettings
from summ_assets.defs.stage_io import run_in_process
from summ_assets.stages.models import student_base_stage, teacher_base_stage
from summ_assets.stages.specs import STUDENT_BASE, TEACHER_BASE

GROUP = MODELS_GROUP


@dg.asset(
    group_name=GROUP,
    code_version=spec_version(TEACHER_BASE),
    kinds={"pytorch", "huggingface"},
    description="The teacher's base model folder (tiny: built from config; demo: Gemma 3 270M converted once "
    "from the GGUF package; gemma2: a hub id or local folder).",
)
def teacher_base(context: dg.AssetExecutionContext, settings: SummSettings) -> dg.Output:
    return run_in_process(
        teacher_base_stage,
        settings.get_profile(),
        settings.asset_dir("teacher_base"),
        settings.data_root,
        settings.artifacts_root,
        log=context.log.info,
    )


@dg.asset(
    group_name=GROUP,
    code_version=spec_version(STUDENT_BASE),
    kinds={"pytorch", "huggingface"},
    description="The student's starting point (tiny: random small model sharing the teacher's tokenizer; "
    "demo: the teacher's base depth-pruned; gemma2: a hub id or local folder); tokenizer identity with the "
    "teacher is checked.",
)
def student_base(context: dg.AssetExecutionContext, settings: SummSettings, teacher_base: dict) -> dg.Output:
    return run_in_process(
        student_base_stage,
        settings.get_profile(),
        settings.asset_dir("student_base"),
        teacher_base,
        log=context.log.info,
    )
