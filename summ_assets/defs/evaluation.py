"""Evaluation report, its quality gates, and promotion of the student that passed them."""

import json
import math
from dataclasses import asdict
from pathlib import Path

import dagster as dg

from summ_assets.core import report as R
from summ_assets.core.artifacts import atomic_write_text, cached_artifact, stable_json_hash
from summ_assets.core.dataset import read_split
from summ_assets.core.integrity import check_files_exist, check_json, check_parquet_files, first_problem
from summ_assets.core.splits import EVAL_SETS
from summ_assets.defs.common import EVALUATION_GROUP, GPU_POOL, code_version, progress_logger
from summ_assets.defs.resources import ComputeResource, SummSettings

GROUP = EVALUATION_GROUP


def check_report_folder(folder: Path) -> str | None:
    """None when an evaluation_report folder is whole: report.json parses, report.md is there and
    predictions.parquet reads."""
    return first_problem(
        lambda: check_json(folder / "report.json", folder),
        lambda: check_files_exist(folder, ["report.md"]),
        lambda: check_parquet_files([folder / "predictions.parquet"], folder),
    )


@dg.asset(
    group_name=GROUP,
    pool=GPU_POOL,
    code_version=code_version("evaluation-report-v1", "eval", "data"),
    kinds={"pytorch", "parquet"},
    description="Teacher vs distilled student vs CE baseline vs untuned student base on val and the three "
    "test sets: Korean ROUGE (Kiwi), BERTScore raw + rescaled, bootstrap CIs, paired KD-vs-baseline test.",
)
def evaluation_report(
    context: dg.AssetExecutionContext,
    settings: SummSettings,
    compute: ComputeResource,
    summary_dataset: str,
    teacher_base: dict,
    student_base: dict,
    teacher_adapter: dict,
    student_model: dict,
    student_baseline: dict,
) -> dg.Output:
    profile = compute.configure(settings.get_profile())
    models = {
        "teacher": teacher_adapter["merged"],
        "student": student_model["path"],
        "baseline": student_baseline["path"],
        "student_base": student_base["path"],
    }
    cap = profile.eval.max_examples_per_set
    sets = {s: read_split(summary_dataset, s)[:cap] for s in EVAL_SETS}
    sets = {s: rows for s, rows in sets.items() if rows}
    key = stable_json_hash(
        {
            "models": models,
            "data": summary_dataset,
            "eval": asdict(profile.eval),
            "versions": [student_model["version"], student_baseline["version"], teacher_adapter["version"]],
        }
    )[:16]
    target = settings.asset_dir("evaluation_report") / key

    def build(tmp: Path) -> None:
        preds, info = R.generate_all(models, sets, profile, progress=progress_logger(context))
        bs_dir = (
            teacher_base["path"]
            if profile.eval.bertscore_model == "teacher_base"
            else profile.eval.bertscore_model
        )
        all_refs = [r["summary"] for s in ("train", *EVAL_SETS) for r in read_split(summary_dataset, s)]
        scored = R.score_all(preds, sets, bs_dir, profile.eval.bertscore_layer, all_refs, profile)
        losses = {}
        for name, meta_src in (
            ("teacher", teacher_adapter),
            ("student", student_model),
            ("baseline", student_baseline),
        ):
            metrics_file = Path(meta_src["path"]) / (
                "metrics.json" if name == "teacher" else "training_metrics.json"
            )
            if metrics_file.exists():
                m = json.loads(metrics_file.read_text())
                losses[name] = m["val_loss"]
                if name == "teacher":
                    losses["teacher_base (untuned)"] = m["base_val_loss"]
                if name == "baseline":
                    losses["student_base (untuned)"] = m["base_val_loss"]
        report = {
            "profile": profile.name,
            "models": info,
            "tables": scored["tables"],
            "bertscore": scored["bertscore"],
            "rouge_tokenizer": scored["rouge_tokenizer"],
            "paired": R.paired_tests(scored["per_example"], "student", "baseline", profile),
            "losses": losses,
            "eval_config": asdict(profile.eval),
            "lineage": {"summary_dataset": summary_dataset, **models},
        }
        R.write_report(report, scored["per_example"], tmp)

    cached_artifact(target, build, log=context.log.info, check=check_report_folder)
    report = json.loads((target / "report.json").read_text())
    md = (target / "report.md").read_text()
    meta: dict[str, object] = {
        "artifact": dg.MetadataValue.path(str(target)),
        "report": dg.MetadataValue.md(md),
        "report_json": dg.MetadataValue.path(str(target / "report.json")),
        "chart_rouge": dg.MetadataValue.path(str(target / "rougeLsum_f.png")),
    }
    val = report["tables"].get("val", {})
    for model, agg in val.items():
        for k in ("rouge1_f", "rouge2_f", "rougeLsum_f", "bertscore_f", "bertscore_f_rescaled"):
            v = agg.get(k)
            if isinstance(v, float) and math.isfinite(v):
                meta[f"val/{model}/{k}"] = v
    return dg.Output(
        {"path": str(target), "report": report},
        metadata=meta,
        data_version=dg.DataVersion(stable_json_hash(report["tables"])[:24]),
    )


@dg.asset_check(
    asset=evaluation_report, blocking=True, description="Every metric in [0, 1]; F1 <= max(P, R)."
)
def metric_sanity(evaluation_report: dict) -> dg.AssetCheckResult:
    bad = []
    for s, by_model in evaluation_report["report"]["tables"].items():
        for m, agg in by_model.items():
            for k in ("rouge1_f", "rouge2_f", "rougeLsum_f", "empty_share"):
                if not 0.0 <= agg[k] <= 1.0:
                    bad.append(f"{s}/{m}/{k}={agg[k]}")
            if agg["bertscore_f"] > max(agg["bertscore_p"], agg["bertscore_r"]) + 1e-6:
                bad.append(f"{s}/{m}: BERTScore F1 {agg['bertscore_f']:.4f} > max(P, R)")
    return dg.AssetCheckResult(
        passed=not bad, metadata={"violations": dg.MetadataValue.md("\n".join(bad) or "none")}
    )


def gate(report: dict, tolerance: float, max_empty: float) -> tuple[bool, list[str]]:
    """Student must not trail the baseline on val ROUGE-Lsum by more than `tolerance`, nor be mostly empty."""
    reasons = _vs_baseline(report, tolerance) + _empty(report, max_empty)
    return not reasons, reasons


def _val(report: dict) -> dict:
    return report["tables"].get("val") or next(iter(report["tables"].values()))


def _vs_baseline(report: dict, tolerance: float) -> list[str]:
    s, b = _val(report)["student"], _val(report)["baseline"]
    if s["rougeLsum_f"] < b["rougeLsum_f"] - tolerance:
        return [
            f"student val ROUGE-Lsum {s['rougeLsum_f']:.4f} < baseline {b['rougeLsum_f']:.4f} - {tolerance}"
        ]
    return []


def _empty(report: dict, max_empty: float) -> list[str]:
    s = _val(report)["student"]
    if s["empty_share"] > max_empty:
        return [f"student empty outputs {s['empty_share']:.0%} > {max_empty:.0%}"]
    return []


@dg.asset_check(
    asset=evaluation_report,
    blocking=True,
    description="Blocking gate: the distilled student's val ROUGE-Lsum is not below the CE baseline's by "
    "more than the profile's tolerance (eval.gate_tolerance).",
)
def student_not_worse_than_baseline(evaluation_report: dict, settings: SummSettings) -> dg.AssetCheckResult:
    report = evaluation_report["report"]
    reasons = _vs_baseline(report, settings.get_profile().eval.gate_tolerance)
    val = _val(report)
    paired = report.get("paired", {}).get("val", {})
    return dg.AssetCheckResult(
        passed=not reasons,
        metadata={
            "reasons": dg.MetadataValue.md("\n".join(reasons) or "passed"),
            "student_rougeLsum": float(val["student"]["rougeLsum_f"]),
            "baseline_rougeLsum": float(val["baseline"]["rougeLsum_f"]),
            "paired_mean_diff": float(paired.get("mean_diff", float("nan"))),
        },
    )


@dg.asset_check(
    asset=evaluation_report,
    blocking=True,
    description="Blocking gate: at most eval.max_empty_share of the student's val summaries are empty.",
)
def student_outputs_not_empty(evaluation_report: dict, settings: SummSettings) -> dg.AssetCheckResult:
    report = evaluation_report["report"]
    reasons = _empty(report, settings.get_profile().eval.max_empty_share)
    return dg.AssetCheckResult(
        passed=not reasons,
        metadata={
            "reasons": dg.MetadataValue.md("\n".join(reasons) or "passed"),
            "empty_share": float(_val(report)["student"]["empty_share"]),
        },
    )


@dg.asset(
    group_name=GROUP,
    code_version=code_version("promoted-student-v1", "eval"),
    kinds={"huggingface"},
    description="The student folder that serving uses: promoted only when it passes the gates; otherwise "
    "the previously promoted model stays.",
)
def promoted_student(
    context: dg.AssetExecutionContext, settings: SummSettings, evaluation_report: dict, student_model: dict
) -> dg.Output:
    ev = settings.get_profile().eval
    ok, reasons = gate(evaluation_report["report"], ev.gate_tolerance, ev.max_empty_share)
    pointer = settings.asset_dir("promoted_student") / "current.json"
    previous = json.loads(pointer.read_text()) if pointer.exists() else None
    if ok:
        current = {
            "path": student_model["path"],
            "version": student_model["version"],
            "report": evaluation_report["path"],
        }
        pointer.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(pointer, json.dumps(current, indent=2) + "\n")
        context.log.info(f"promoted {student_model['path']}")
    else:
        context.log.warning(f"student not promoted: {'; '.join(reasons)}; keeping {previous}")
        current = previous or {"path": None, "version": None, "report": evaluation_report["path"]}
    return dg.Output(
        {**current, "promoted_now": ok, "reasons": reasons},
        data_version=dg.DataVersion(str(current.get("version"))),
        metadata={
            "promoted_now": ok,
            "path": str(current.get("path")),
            "reasons": dg.MetadataValue.md("\n".join(reasons) or "passed all gates"),
        },
    )
