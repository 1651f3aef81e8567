"""Evaluation: generate with every model on every set, score, bootstrap, write Markdown/JSON/PNG/Parquet."""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from summ_assets.core import metrics as M
from summ_assets.core.generation import summarize_texts
from summ_assets.core.lm import set_threads
from summ_assets.core.models import count_parameters, load_causal_lm, resolve_device
from summ_assets.core.profiles import Profile

log = logging.getLogger(__name__)


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).glob("*.safetensors"))


def generate_all(
    models: dict[str, str],
    sets: dict[str, list[dict[str, Any]]],
    profile: Any,
    progress: Callable[[str], None] | None = None,
) -> tuple[dict[str, dict[str, list[str]]], dict[str, dict[str, Any]]]:
    """{model: {set: predictions}}, {model: {tokens_per_s, parameters, bytes}} — one model in memory at a time."""
    from transformers import AutoTokenizer

    set_threads(profile.threads)
    preds: dict[str, dict[str, list[str]]] = {}
    info: dict[str, dict[str, Any]] = {}
    for name, path in models.items():
        tok = AutoTokenizer.from_pretrained(path)
        model = load_causal_lm(path, profile.dtype, resolve_device(profile.device), profile.max_memory)
        preds[name], toks, secs = {}, 0, 0.0
        for set_name, rows in sets.items():
            outs, st = summarize_texts(
                model,
                tok,
                [r["text"] for r in rows],
                max_prompt_tokens=profile.data.max_prompt_tokens,
                max_new_tokens=profile.eval.max_new_tokens,
                batch_size=profile.eval.batch_size,
                do_sample=profile.eval.do_sample,
            )
            preds[name][set_name] = outs
            toks += st["tokens"]
            secs += st["seconds"]
            if progress:
                progress(f"{name} on {set_name}: {len(outs)} summaries, {st['tokens_per_s']:.1f} tok/s")
        info[name] = {
            "tokens_per_s": toks / secs if secs else 0.0,
            "parameters": count_parameters(model),
            "bytes": folder_bytes(Path(path)),
            "path": path,
        }
        del model
        gc.collect()
    return preds, info


def bertscore_honest(scorer: Any, cands: list[str], refs: list[str]) -> dict[str, list[float]]:
    """BERTScore with two honest conventions: an empty output scores P = R = F = 0 (it says nothing),
    and F = 0 where P or R <= 0 (bert_score's harmonic mean of negative cosines is meaningless)."""
    idx = [i for i, c in enumerate(cands) if c.strip()]
    out = {"P": [0.0] * len(cands), "R": [0.0] * len(cands), "F": [0.0] * len(cands)}
    if idx:
        got = scorer.score([cands[i] for i in idx], [refs[i] for i in idx])
        for j, i in enumerate(idx):
            p, r = got["P"][j], got["R"][j]
            out["P"][i], out["R"][i] = p, r
            out["F"][i] = got["F"][j] if p > 0 and r > 0 else 0.0
    return out


def score_all(
    preds: dict[str, dict[str, list[str]]],
    sets: dict[str, list[dict[str, Any]]],
    bertscore_dir: str,
    bertscore_layer: int | None,
    baseline_texts: list[str],
    profile: Any,
) -> dict[str, Any]:
    """Per-example scores and per-(set, model) aggregates with bootstrap CIs."""
    import numpy as np

    scorer = M.BertScorer(bertscore_dir, bertscore_layer, device="cpu" if profile.device == "cpu" else None)
    baseline = scorer.baseline_from_random_pairs(
        baseline_texts, n_pairs=min(500, 20 * len(baseline_texts)), seed=profile.eval.seed
    )
    per_example: list[dict[str, Any]] = []
    tables: dict[str, dict[str, dict[str, Any]]] = {}
    for set_name, rows in sets.items():
        refs = [r["summary"] for r in rows]
        tables[set_name] = {}
        for model, by_set in preds.items():
            cands = by_set[set_name]
            kiwi = M.rouge_scores(cands, refs, "kiwi")
            ws = M.rouge_scores(cands, refs, "whitespace")
            ch = M.rouge_scores(cands, refs, "char")
            bs = bertscore_honest(scorer, cands, refs)
            for i, r in enumerate(rows):
                per_example.append(
                    {
                        "set": set_name,
                        "model": model,
                        "section_id": r["section_id"],
                        "heading_path": r["heading_path"],
                        "reference": refs[i],
                        "prediction": cands[i],
                        **{k: v for k, v in kiwi[i].items()},
                        "rougeLsum_f_whitespace": ws[i]["rougeLsum_f"],
                        "rougeLsum_f_char": ch[i]["rougeLsum_f"],
                        "bertscore_p": bs["P"][i],
                        "bertscore_r": bs["R"][i],
                        "bertscore_f": bs["F"][i],
                    }
                )
            agg: dict[str, Any] = {"n": len(rows)}
            for key in ("rouge1_f", "rouge2_f", "rougeLsum_f"):
                agg[key] = float(np.mean([x[key] for x in kiwi])) if kiwi else float("nan")
            agg["rougeLsum_f_whitespace"] = (
                float(np.mean([x["rougeLsum_f"] for x in ws])) if ws else float("nan")
            )
            agg["rougeLsum_f_char"] = float(np.mean([x["rougeLsum_f"] for x in ch])) if ch else float("nan")
            for key, b in zip(("P", "R", "F"), baseline, strict=True):
                raw = float(np.mean(bs[key])) if bs[key] else float("nan")
                agg[f"bertscore_{key.lower()}"] = raw
                agg[f"bertscore_{key.lower()}_rescaled"] = M.rescale(raw, b)
            agg.update(M.output_stats(cands))
            if rows:
                for key, vals in (
                    ("rougeLsum_f", [x["rougeLsum_f"] for x in kiwi]),
                    ("bertscore_f", bs["F"]),
                ):
                    mean, lo, hi = M.bootstrap_ci(vals, profile.eval.bootstrap_samples, profile.eval.seed)
                    agg[f"{key}_ci"] = [lo, hi]
            tables[set_name][model] = agg
    return {
        "tables": tables,
        "per_example": per_example,
        "bertscore": {
            "hash": scorer.hash,
            "layer": scorer.num_layers,
            "model": bertscore_dir,
            "baseline_pf_r_f": list(baseline),
        },
        "rouge_tokenizer": M.tokenizer_name("kiwi"),
    }


def paired_tests(per_example: list[dict[str, Any]], a: str, b: str, profile: Profile) -> dict[str, Any]:

    out = {}
    sets = sorted({x["set"] for x in per_example})
    for s in sets:
        xa = {x["section_id"]: x["rougeLsum_f"] for x in per_example if x["set"] == s and x["model"] == a}
        xb = {x["section_id"]: x["rougeLsum_f"] for x in per_example if x["set"] == s and x["model"] == b}
        ids = sorted(set(xa) & set(xb))
        if ids:
            out[s] = M.paired_bootstrap(
                [xa[i] for i in ids], [xb[i] for i in ids], profile.eval.bootstrap_samples, profile.eval.seed
            )
    return out


COLUMNS = [
    ("rouge1_f", "R-1"),
    ("rouge2_f", "R-2"),
    ("rougeLsum_f", "R-Lsum"),
    ("bertscore_p", "BS-P"),
    ("bertscore_r", "BS-R"),
    ("bertscore_f", "BS-F1"),
    ("bertscore_f_rescaled", "BS-F1 resc."),
    ("mean_chars", "len"),
    ("empty_share", "empty"),
    ("multi_sentence_share", "multi-sent"),
]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Evaluation report ({report['profile']})", ""]
    lines.append(
        f"ROUGE tokenizer: `{report['rouge_tokenizer']}` (Kiwi morphemes; F1). BERTScore: "
        f"`{report['bertscore']['hash']}`; rescaled with a random-pair baseline from this corpus "
        f"(P/R/F = {', '.join(f'{x:.3f}' for x in report['bertscore']['baseline_pf_r_f'])})."
    )
    lines.append("")
    for set_name, by_model in report["tables"].items():
        n = next(iter(by_model.values()))["n"] if by_model else 0
        lines += [
            f"## {set_name} (n={n})",
            "",
            "| model | " + " | ".join(c for _, c in COLUMNS) + " | R-Lsum 95% CI | tok/s | params |",
            "|---" * (len(COLUMNS) + 4) + "|",
        ]
        for model, agg in by_model.items():
            ci = agg.get("rougeLsum_f_ci")
            cis = f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
            inf = report["models"][model]
            lines.append(
                f"| {model} | "
                + " | ".join(_fmt(agg.get(k)) for k, _ in COLUMNS)
                + f" | {cis} | {inf['tokens_per_s']:.1f} | {inf['parameters'] / 1e6:.1f}M |"
            )
        lines.append("")
    if report.get("paired"):
        lines += [
            "## Distillation gain: student vs baseline (paired bootstrap, ROUGE-Lsum F1)",
            "",
            "| set | mean diff | 95% CI | p (student <= baseline) |",
            "|---|---|---|---|",
        ]
        for s, r in report["paired"].items():
            lines.append(
                f"| {s} | {r['mean_diff']:+.4f} | [{r['low']:+.4f}, {r['high']:+.4f}] | {r['p_value']:.3f} |"
            )
        lines.append("")
    if report.get("losses"):
        lines += ["## Validation loss (summary tokens)", "", "| model | val loss |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" for k, v in report["losses"].items()]
        lines.append("")
    return "\n".join(lines)


def charts(report: dict[str, Any], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for metric, label in (
        ("rougeLsum_f", "ROUGE-Lsum F1 (Kiwi)"),
        ("bertscore_f_rescaled", "BERTScore F1 (rescaled)"),
    ):
        sets = list(report["tables"])
        models = list(next(iter(report["tables"].values())).keys()) if sets else []
        fig, ax = plt.subplots(figsize=(8, 4))
        width = 0.8 / max(len(models), 1)
        for i, m in enumerate(models):
            vals = [report["tables"][s][m].get(metric, 0.0) for s in sets]
            ax.bar([x + i * width for x in range(len(sets))], vals, width, label=m)
        ax.set_xticks([x + width * (len(models) - 1) / 2 for x in range(len(sets))], sets)
        ax.set_ylabel(label)
        ax.set_title(f"{label} by set and model ({report['profile']})")
        ax.legend(fontsize=8)
        fig.tight_layout()
        p = out_dir / f"{metric}.png"
        fig.savefig(p, dpi=100)
        plt.close(fig)
        paths.append(p)
    return paths


def write_report(report: dict[str, Any], per_example: list[dict[str, Any]], out_dir: Path) -> dict[str, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(
        json.dumps(report, indent=2, ensure_ascii=False, default=float) + "\n"
    )
    (out_dir / "report.md").write_text(markdown(report) + "\n")
    pq.write_table(pa.Table.from_pylist(per_example), out_dir / "predictions.parquet", compression="zstd")
    pngs = charts(report, out_dir)
    return {
        "json": out_dir / "report.json",
        "md": out_dir / "report.md",
        "predictions": out_dir / "predictions.parquet",
        **{p.stem: p for p in pngs},
    }


def curve_md(curve: list, name: str) -> str:
    """A loss curve [(step, value), ...] as a Markdown table (one format for every curve in the UI)."""
    rows = "\n".join(f"| {s} | {v:.4f} |" for s, v in curve)
    return f"| step | {name} |\n|---|---|\n{rows}\n"
