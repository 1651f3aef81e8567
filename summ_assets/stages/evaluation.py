"""The evaluation stage: scores of the cached generations, the gates on val, and promotion of the
student that passed them (no dagster import here).

val drives every gate; the test sets only carry claims (`core.gates` takes val scores only). The
report's key derives from its spec (whose code tag holds the evaluation code's own hash, so a metrics
fix re-scores instead of republishing an old report) and the promoted student's version, whose val
outputs the never-regress gate compares against.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from summ_assets.core import gates as G
from summ_assets.core import metrics as M
from summ_assets.core import report as R
from summ_assets.core.artifacts import atomic_write_text, cached_artifact, stable_json_hash
from summ_assets.core.dataset import read_split
from summ_assets.core.generation_store import evaluation_rows, generate_cached
from summ_assets.core.integrity import check_files_exist, check_json, check_parquet_files, first_problem
from summ_assets.core.profiles import Profile
from summ_assets.core.spec import AssetSpec, ProfileView
from summ_assets.core.splits import EVAL_SETS, SET_ROLES
from summ_assets.stages.base import Progress, StageResult, meta
from summ_assets.stages.specs import EVALUATION_REPORT, EVALUATION_REPORT_FULL

GENERATIONS = ("teacher", "student", "baseline", "student_base")


def check_report_folder(folder: Path) -> str | None:
    """None when an evaluation_report folder is whole: report.json parses, report.md is there and
    predictions.parquet reads."""
    return first_problem(
        lambda: check_json(folder / "report.json", folder),
        lambda: check_files_exist(folder, ["report.md"]),
        lambda: check_parquet_files([folder / "predictions.parquet"], folder),
    )


def read_pointer(pointer: Path) -> dict | None:
    """The promoted student's record (`promoted_student/current.json`), None before the first promotion."""
    p = Path(pointer)
    return json.loads(p.read_text()) if p.exists() else None


def training_ids(summary_dataset: str | None) -> set[str] | None:
    """Sections a student trained on (train + the unlabelled pool seq-KD draws from), None if unknown."""
    if not summary_dataset or not Path(summary_dataset).exists():
        return None
    return {r["section_id"] for s in ("train", "unlabelled") for r in read_split(summary_dataset, s)}


def _val_scores(per_example: list[dict], model: str) -> G.ValScores:
    rows = [x for x in per_example if x["set"] == "val" and x["model"] == model]
    return G.ValScores(
        {x["section_id"]: x["rougeLsum_f"] for x in rows}, {x["section_id"]: x["doc_id"] for x in rows}
    )


def _shares_weights(ev_model: str) -> str:
    if ev_model == "teacher_base":
        return (
            "is the teacher's untuned base; the demo students are pruned from the same weights, so "
            "BERTScore may favour them: read it beside ROUGE (`ranking` below says whether both orders agree)."
        )
    return "is a separate model folder."


def _ranking(tables: dict) -> dict[str, dict]:
    out = {}
    for s, by_model in tables.items():
        rouge = sorted(by_model, key=lambda m: -by_model[m]["rougeLsum_f"])
        bs = sorted(
            by_model,
            key=lambda m: -(by_model[m]["bertscore_f"] if math.isfinite(by_model[m]["bertscore_f"]) else -9),
        )
        out[s] = {"rougeLsum": rouge, "bertscore": bs, "same_order": rouge == bs}
    return out


def evaluation_stage(
    profile: Profile | ProfileView,
    root: Path,
    pointer: Path,
    store: Path,
    summary_dataset: str,
    teacher_base: dict[str, Any],
    generations: dict[str, dict[str, Any]],
    progress: Progress | None = None,
    log: Progress | None = None,
    spec: AssetSpec = EVALUATION_REPORT,
) -> StageResult:
    """Score the cached generations (`generations`: model -> its `*_generations` output) on val and the
    test sets, run the gates on val, write `root/<key>/{report.json,report.md,predictions.parquet,...}`."""
    profile = spec.view(profile)
    ev = profile.eval
    gens = dict(generations)
    student_generations = gens["student"]
    skipped = {m: g["skipped"] for m, g in gens.items() if g.get("skipped")}
    gens = {m: g for m, g in gens.items() if not g.get("skipped")}
    previous = read_pointer(pointer)
    scope = (
        "full"
        if ev.test_sample is None
        else f"sample: val in full, the first {ev.test_sample} of each test set"
    )
    key = spec.key(
        profile.profile,
        {
            "data": summary_dataset,
            "generations": {m: g["path"] for m, g in gens.items()},
            "promoted": (previous or {}).get("version"),
        },
    )
    target = Path(root) / key

    def build(tmp: Path) -> None:
        sets, totals = evaluation_rows(summary_dataset, ev.test_sample, with_totals=True)
        preds = {m: R.read_generations(g["path"]) for m, g in gens.items()}
        val_ids = {r["section_id"] for r in sets["val"]}
        student = student_generations
        promoted_info: dict = {"version": None}
        comparable = (True, "")  # read only when something is promoted (regress_gate gets None otherwise)
        if previous and previous.get("version"):
            promoted_info = {k: previous.get(k) for k in ("path", "version", "parameters")}
            if previous["version"] == student["version"]:
                # the promoted model IS this student: nothing to compare it with (the gate says so)
                comparable = (False, "same_model")
            elif not previous.get("path") or not Path(previous["path"]).exists():
                comparable = (False, f"the promoted model's folder is gone ({previous.get('path')})")
            else:
                comparable = G.training_overlap(training_ids(previous.get("summary_dataset")), val_ids)
                if comparable[0]:
                    got = generate_cached(
                        previous["path"],
                        previous["version"],
                        {"val": sets["val"]},
                        profile,
                        store,
                        progress,
                    )
                    preds["promoted"] = {("val", r["section_id"]): r["prediction"] for r in got["rows"]}
                    promoted_info["parameters"] = got["model"]["parameters"]
        bs_dir = teacher_base["path"] if ev.bertscore_model == "teacher_base" else ev.bertscore_model
        scorer = M.BertScorer(bs_dir, ev.bertscore_layer, device="cpu" if profile.device == "cpu" else None)
        # the rescaling baseline and the sanity checks feed a gate: built from train + val references only
        train_rows = read_split(summary_dataset, "train")
        pool = train_rows + sets["val"]
        texts = [r["summary"] for r in pool]
        groups = [f"{M.language_of(t)}:{r['doc_id']}" for t, r in zip(texts, pool, strict=True)]
        n_pairs = min(500, 20 * len(texts))
        baseline = scorer.baseline_from_pairs(texts, groups, n_pairs=n_pairs, seed=ev.seed)
        scored = R.score_all(preds, sets, scorer, baseline, profile)
        # sanity on the val references plus up to 100 train ones (enough documents to pair across)
        n_val, n_train = len(sets["val"]), len(train_rows)
        keep = list(range(min(100, n_train))) + list(range(n_train, len(pool)))
        sanity = (
            M.metric_sanity(
                scorer, [texts[i] for i in keep], [groups[i] for i in keep], baseline, seed=ev.seed
            )
            if n_val
            else {}
        )
        per = scored["per_example"]
        student_val = _val_scores(per, "student")
        gate_list = [
            G.baseline_gate(
                student_val,
                _val_scores(per, "baseline"),
                rule=ev.baseline_gate,
                alpha=ev.gate_alpha,
                n_samples=ev.bootstrap_samples,
                seed=ev.seed,
            ),
            G.regress_gate(
                student_val,
                None if not (previous and previous.get("version")) else _val_scores(per, "promoted"),
                comparable=comparable,
                margin=ev.regress_margin,
                alpha=ev.gate_alpha,
                n_samples=ev.bootstrap_samples,
                seed=ev.seed,
                sizes={
                    "new_parameters": student["parameters"],
                    "promoted_parameters": promoted_info.get("parameters"),
                    "promoted_version": promoted_info.get("version"),
                },
            ),
            G.empty_gate(
                [preds["student"].get(("val", r["section_id"]), "") for r in sets["val"]], ev.max_empty_share
            ),
            G.sanity_gate(M.sanity_problems(sanity), sanity),
            G.degeneration_gate(
                [p for r in sets["val"] if (p := preds["student"].get(("val", r["section_id"]), "")).strip()],
                ev.max_degenerate_share,
            ),
        ]
        scored["tables"].get("val", {}).pop("promoted", None)
        per_claims = [x for x in per if x["model"] != "promoted"]
        tables = {s: t for s, t in scored["tables"].items() if t}
        report = {
            "profile": profile.name,
            "scope": scope,
            "sets": {
                s: {
                    "role": SET_ROLES[s],
                    "n": len(sets[s]),
                    "n_total": totals[s],
                    "n_docs": len({r["doc_id"] for r in sets[s]}),
                }
                for s in EVAL_SETS
            },
            "models": {
                m: {k: g[k] for k in ("model_path", "version", "parameters", "bytes", "speed")}
                for m, g in gens.items()
            },
            "tables": tables,
            "degeneration": R.degeneration_table(
                {m: R.read_generations(g["path"], "raw") for m, g in gens.items()},
                {m: preds[m] for m in gens},
                sets,
            ),
            "prompts_cut": (gens.get("student") or {}).get("prompts_cut") or {},
            "alpha": profile.eval.gate_alpha,
            "comparisons": R.comparisons(per_claims, profile),
            "ranking": _ranking(tables),
            "bertscore": {
                "hash": scorer.hash,
                "layer": scorer.num_layers,
                "model": bs_dir,
                "baseline_pf_r_f": list(baseline),
                "baseline_pairs": n_pairs,
                "shares_weights": _shares_weights(ev.bertscore_model),
            },
            "sanity": sanity,
            "gates": {g.name: g.as_dict() for g in gate_list},
            "promoted_before": promoted_info,
            "models_not_generated": skipped,
            "rouge_tokenizer": scored["rouge_tokenizer"],
            "losses": _losses(gens),
            "eval_config": profile.section("eval"),
            "code_version": spec.code_version(profile.profile),
            "lineage": {
                "summary_dataset": summary_dataset,
                **{m: g["model_path"] for m, g in gens.items()},
                "student_version": student["version"],
            },
        }
        R.write_report(report, per, tmp)

    cached_artifact(target, build, log=log, check=check_report_folder)
    report = json.loads((target / "report.json").read_text())
    charts = "\n\n".join(R.inline_png(target / f"{n}.png", n) for n in ("scores", "gain"))
    metadata: dict[str, dict[str, Any]] = {
        "artifact": meta(str(target), "path"),
        "report": meta(R.markdown(report), "md"),
        "charts": meta(charts, "md"),
        "report_json": meta(str(target / "report.json"), "path"),
        "scope": meta(report["scope"], "text"),
    }
    for s, by_model in report["tables"].items():
        for model, agg in by_model.items():
            for k in ("rougeLsum_f", "bertscore_f"):
                v = agg.get(k)
                if isinstance(v, float) and math.isfinite(v):
                    metadata[f"{s}/{model}/{k}"] = meta(round(v, 4), "float")
    return StageResult(
        value={"path": str(target), "report": report},
        metadata=metadata,
        data_version=stable_json_hash([report["tables"], report["gates"]])[:24],
    )


def _losses(gens: dict[str, dict]) -> dict[str, dict[str, float | None]]:
    """Each trained model's val loss per summary token and in bits per byte of the summary text (None
    when the model was trained before bits per byte were recorded)."""
    losses = {}
    for name in ("teacher", "student", "baseline"):
        if name not in gens:
            continue
        folder = Path(gens[name]["model_path"])
        f = folder.parent / "metrics.json" if name == "teacher" else folder / "training_metrics.json"
        if f.exists():
            m = json.loads(f.read_text())
            losses[name] = {"loss": m["val_loss"], "bits_per_byte": m.get("val_bits_per_byte")}
            base = {"loss": m["base_val_loss"], "bits_per_byte": m.get("base_val_bits_per_byte")}
            if base["loss"] != base["loss"]:  # NaN: not scored (eval.untuned_val_loss off)
                continue
            if name == "teacher":
                losses["teacher_base (untuned)"] = base
            if name == "baseline":
                losses["student_base (untuned)"] = base
    return losses


def full_evaluation_stage(
    profile: Profile | ProfileView,
    root: Path,
    pointer: Path,
    store: Path,
    summary_dataset: str,
    teacher_base: dict[str, Any],
    models: dict[str, dict[str, Any]],
    progress: Progress | None = None,
    log: Progress | None = None,
) -> StageResult:
    """`evaluation_report_full`: every model (`models`: name -> its model asset's output) on every
    example of val and the test sets, generated through the shared store (rows the sampled evaluation
    already generated are reused), then scored like the sampled report, into `root/`."""
    from summ_assets.stages.generations import generations_stage

    view = EVALUATION_REPORT_FULL.view(profile)
    gens = {
        name: generations_stage(
            name,
            view,
            Path(root) / "generations" / name,
            store,
            summary_dataset,
            model,
            progress,
            log,
            spec=EVALUATION_REPORT_FULL,
        ).value
        for name, model in models.items()
    }
    return evaluation_stage(
        view,
        root,
        pointer,
        store,
        summary_dataset,
        teacher_base,
        gens,
        progress,
        log,
        spec=EVALUATION_REPORT_FULL,
    )


def promote(pointer: Path, report: dict) -> dict:
    """Move the pointer to the report's student when every gate passed; otherwise leave it. Returns the
    pointer's content plus ``promoted_now`` and ``reasons``."""
    failed = [g for g in report.get("gates", {}).values() if not g["passed"]]
    reasons = [f"{g['name']}: {'; '.join(g['reasons'])}" for g in failed]
    if not report.get("gates"):
        reasons = ["the report holds no gate results"]
    previous = json.loads(pointer.read_text()) if pointer.exists() else None
    if not reasons:
        lin = report["lineage"]
        current = {
            "path": lin["student"],
            "version": lin["student_version"],
            "parameters": report["models"]["student"]["parameters"],
            "summary_dataset": lin["summary_dataset"],
            "report": report.get("path"),
        }
        pointer.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(pointer, json.dumps(current, indent=2) + "\n")
    else:
        current = previous or {"path": None, "version": None}
    return {**current, "promoted_now": not reasons, "reasons": reasons}
