"""`student_trimmed_base`: the students' starting point with a trimmed vocabulary (`core.vocab`).

Declaration only: the body is `summ_assets.stages.vocab.trimmed_base_stage`.
"""

import dagster as dg

from summ_assets.defs.common import STUDENT_GROUP, spec_version
from summ_assets.defs.resources import SummSettings
from summ_assets.defs.stage_io import run_in_process
from summ_assets.stages.specs import STUDENT_TRIMMED_BASE
from summ_assets.stages.vocab import trimmed_base_stage


@dg.asset(
    group_name=STUDENT_GROUP,
    code_version=spec_version(STUDENT_TRIMMED_BASE),
    kinds={"pytorch", "huggingface"},
    description="The student base with its vocabulary trimmed to the merge closure of the training text "
    "(student.vocab_size rows; None = the base itself). Data version = the kept set.",
)
def student_trimmed_base(
    context: dg.AssetExecutionContext, settings: SummSettings, student_base: dict, summary_dataset: str
) -> dg.Output:
    return run_in_process(
        trimmed_base_stage,
        settings.get_profile(),
        settings.asset_dir("student_trimmed_base"),
        student_base,
        summary_dataset,
        log=context.log.info,
        warn=context.log.warning,
    )
