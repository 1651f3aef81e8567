"""Evaluation report (scores of the cached generations), its blocking gates, and promotion of the
student that passed them. Declarations only: the bodies are `summ_assets.stages.evaluation`."""

import math
from pathlib import Path

import dagster as dg

from summ_assets.defs.common import EVALUATION_GROUP, GPU_POOL, ON_DEMAND_TAG, progress_logger, spec_version
from summ_assets.defs.resources import ComputeResource, SummSettings
from summ_assets.defs.stage_io import run_in_process
from summ_assets.stages.evaluation import evaluation_stage, full_evaluation_stage, promote
from summ_assets.stages.specs import EVALUATION_REPORT, EVALUATION_REPORT_FULL, PROMOTED_STUDENT

GROUP = EVALUATION_GROUP


def pointer_path(settings: SummSettings) -> Path:
    return settings.asset_dir("promoted_student") / "current.json"


@dg.asset(
    group_name=GROUP,
    pool=GPU_POOL,
    code_version=spec_version(EVALUATION_REPORT),
    kinds={"parquet"},
    description="Scores of the cached generations (teacher, distilled student, CE baseline, untuned base) on "
    "val (used for selection) and the three test sets (the claims): Kiwi ROUGE, BERTScore, document-"
    "clustered CIs, permutation tests, MDE; the gates on val; charts inline.",
)
def evaluation_report(
    context: dg.AssetExecutionContext,
    settings: SummSettings,
    compute: ComputeResource,
    summary_dataset: str,
    teacher_base: dict,
    teacher_generations: dict,
    student_generations: dict,
    baseline_generations: dict,
    student_base_generations: dict,
) -> dg.Output:
    return run_in_process(
        evaluation_stage,
        compute.configure(settings.get_profile(), log=context.log),
        settings.asset_dir("evaluation_report"),
        pointer_path(settings),
        settings.store_root,
        summary_dataset,
        teacher_base,
        {
            "teacher": teacher_generations,
            "student": student_generations,
            "baseline": baseline_generations,
            "student_base": student_base_generations,
        },
        progress=progress_logger(context),
        log=context.log.info,
    )


@dg.asset(
    group_name=GROUP,
    pool=GPU_POOL,
    code_version=spec_version(EVALUATION_REPORT_FULL),
    kinds={"parquet"},
    tags={ON_DEMAND_TAG: "true"},
    description="On demand (`make eval-full`): every model on every example of val and the test sets, "
    "scored like evaluation_report. A separate result, so the full and the sampled evaluation never make "
    "each other stale; the README's headline comes from it. Not run by automation or `make demo`.",
)
def evaluation_report_full(
    context: dg.AssetExecutionContext,
    settings: SummSettings,
    compute: ComputeResource,
    summary_dataset: str,
    teacher_base: dict,
    teacher_adapter: dict,
    student_model: dict,
    student_baseline: dict,
    student_trimmed_base: dict,
) -> dg.Output:
    return run_in_process(
        full_evaluation_stage,
        compute.configure(settings.get_profile(), log=context.log),
        settings.asset_dir("evaluation_report_full"),
        pointer_path(settings),
        settings.store_root,
        summary_dataset,
        teacher_base,
        {
            "teacher": teacher_adapter,
            "student": student_model,
            "baseline": student_baseline,
            "student_base": student_trimmed_base,
        },
        progress=progress_logger(context),
        log=context.log.info,
    )


def gate_result(report: dict, name: str) -> dict:
    """One gate's stored result; a report without it (an old format) fails with a message."""
    g = report.get("gates", {}).get(name)
    if g is None:
        return {
            "name": name,
            "passed": False,
            "reasons": [f"the report has no '{name}' gate result"],
            "numbers": {},
        }
    return g


def _check(evaluation_report: dict, name: str) -> dg.AssetCheckResult:
    """One stored gate result as a check: its reasons as plain text (shown without a click) and its
    numbers rounded."""
    g = gate_result(evaluation_report["report"], name)
    meta: dict[str, object] = {"reasons": dg.MetadataValue.text("; ".join(g["reasons"]))}
    for k, v in g["numbers"].items():
        if isinstance(v, bool) or isinstance(v, str):
            meta[k] = str(v)
        elif isinstance(v, int | float) and math.isfinite(v):
            meta[k] = round(float(v), 4)
    return dg.AssetCheckResult(passed=bool(g["passed"]), metadata=meta)


def _gate_check(check_name: str, gate: str, description: str) -> dg.AssetChecksDefinition:
    """A blocking check on `evaluation_report` that shows one stored gate result with its numbers."""

    @dg.asset_check(asset=evaluation_report, name=check_name, blocking=True, description=description)
    def _gate(evaluation_report: dict) -> dg.AssetCheckResult:
        return _check(evaluation_report, gate)

    return _gate


metric_sanity = _gate_check(
    "metric_sanity",
    "metric_sanity",
    "Blocking: the metrics can fail — each reference scored against itself gives 1 (ROUGE and BERTScore), "
    "references of other documents score near the rescaling baseline (rescaled ~ 0).",
)
student_not_worse_than_baseline = _gate_check(
    "student_not_worse_than_baseline",
    "student_vs_baseline",
    "Blocking gate on val: the distilled student vs the CE baseline by a CI rule "
    "(eval.baseline_gate: not_worse = fail when the whole clustered CI of the difference is below 0).",
)
student_not_worse_than_promoted = _gate_check(
    "student_not_worse_than_promoted",
    "student_vs_promoted",
    "Blocking gate on val: never regress. The new student vs the promoted one on the same val examples, "
    "non-inferiority with margin eval.regress_margin; 'not comparable' when the promoted model trained on "
    "a section now in val.",
)
student_not_degenerate = _gate_check(
    "student_not_degenerate",
    "student_not_degenerate",
    "Blocking gate: at most eval.max_degenerate_share of the student's non-empty final val summaries are "
    "degenerate (digit runs, repeated 3-grams, phrase loops, leaked markup, line breaks, several sentences).",
)
student_outputs_not_empty = _gate_check(
    "student_outputs_not_empty",
    "student_outputs_not_empty",
    "Blocking gate: at most eval.max_empty_share of the student's val summaries are empty.",
)


@dg.asset(
    group_name=GROUP,
    code_version=spec_version(PROMOTED_STUDENT),
    kinds={"huggingface"},
    description="The student folder that serving uses: promoted only when it passes every gate; otherwise "
    "the previously promoted model stays.",
)
def promoted_student(
    context: dg.AssetExecutionContext, settings: SummSettings, evaluation_report: dict, student_model: dict
) -> dg.Output:
    report = {**evaluation_report["report"], "path": evaluation_report["path"]}
    current = promote(pointer_path(settings), report)
    if current["promoted_now"]:
        context.log.info(f"promoted {current['path']}")
    else:
        context.log.warning(f"student {student_model['path']} not promoted: {'; '.join(current['reasons'])}")
    gates = report.get("gates", {})
    numbers = {
        f"{g}/{k}": round(float(v), 4)
        for g, res in gates.items()
        for k, v in res.get("numbers", {}).items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }
    return dg.Output(
        current,
        data_version=dg.DataVersion(str(current.get("version"))),
        metadata={
            "promoted_now": current["promoted_now"],
            "promoted_path": dg.MetadataValue.path(str(current.get("path"))),
            "promoted_version": str(current.get("version")),
            "parameters": int(current.get("parameters") or 0),
            "gates": dg.MetadataValue.md(
                "\n".join(
                    f"- **{g}**: {'passed' if res.get('passed') else 'FAILED'} ({'; '.join(res.get('reasons', []))})"
                    for g, res in gates.items()
                )
                or "no gate results"
            ),
            **numbers,
            "reasons": dg.MetadataValue.md("\n".join(current["reasons"]) or "passed all gates"),
        },
    )
