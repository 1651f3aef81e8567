"""Each evaluated model's generations as their own cached asset (body: `summ_assets.stages.generations`).

`teacher_generations`, `student_generations`, `baseline_generations` and `student_base_generations`
each depend on one model and the dataset; the evaluation report depends on them. Retraining the student
re-runs only `student_generations` (the others keep their data version), and a change of the metrics
re-scores in `evaluation_report` without generating anything.
"""

import dagster as dg

from summ_assets.defs.common import EVALUATION_GROUP, GPU_POOL, progress_logger, spec_version
from summ_assets.defs.resources import ComputeResource, SummSettings
from summ_assets.defs.stage_io import run_in_process
from summ_assets.stages.generations import DESCRIPTIONS, MODELS, generations_stage
from summ_assets.stages.specs import GENERATIONS


def _generations_asset(name: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"{name}_generations",
        group_name=EVALUATION_GROUP,
        pool=GPU_POOL,
        code_version=spec_version(GENERATIONS[name]),
        kinds={"pytorch", "parquet"},
        ins={"model": dg.AssetIn(MODELS[name][0])},
        description=f"Greedy summaries by {DESCRIPTIONS[name]} of val (all) and the test sets (the profile's "
        "fixed sample, or all with SUMM_EVAL_SCOPE=full); only rows the store lacks are generated.",
    )
    def _asset(
        context: dg.AssetExecutionContext,
        settings: SummSettings,
        compute: ComputeResource,
        summary_dataset: str,
        model: dict,
    ) -> dg.Output:
        return run_in_process(
            generations_stage,
            name,
            compute.configure(settings.get_profile(), log=context.log),
            settings.asset_dir(f"{name}_generations"),
            settings.store_root,
            summary_dataset,
            model,
            progress=progress_logger(context),
            log=context.log.info,
        )

    return _asset


teacher_generations = _generations_asset("teacher")
student_generations = _generations_asset("student")
baseline_generations = _generations_asset("baseline")
student_base_generations = _generations_asset("student_base")
GENERATION_ASSETS = [teacher_generations, student_generations, baseline_generations, student_base_generations]
