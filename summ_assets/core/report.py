"""Evaluation: score cached generations (`core.generation_store`), compare models with honest statistics
(`core.stats`), write Markdown/JSON/PNG/Parquet."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from summ_assets.core import metrics as M
from summ_assets.core import stats as S

log = logging.getLogger(__name__)


def read_generations(path: str | Path, column: str = "prediction") -> dict[tuple[str, str], str]:
    """{(set, section_id): prediction} from a generations asset's Parquet file (`column` "raw": the
    decoded generation before the one-sentence cut)."""
    import pyarrow.parquet as pq

    return {(r["set"], r["section_id"]): r[column] for r in pq.read_table(path).to_pylist()}


def degeneration_table(
    raw: dict[str, dict[tuple[str, str], str]],
    final: dict[str, dict[tuple[str, str], str]],
    sets: dict[str, list[dict[str, Any]]],
) -> dict[str, dict[str, dict[str, Any]]]:
    """{set: {model: {"raw": shares, "final": shares}}} (`core.degeneration.shares`) for every model
    with generations, on the sets where it has a generation for every row (as `score_all`: a model that
    did not generate a set, e.g. the teacher's val under the sample scope, is left out, not counted as
    empty outputs)."""
    from summ_assets.core.degeneration import shares

    out: dict[str, dict[str, dict[str, Any]]] = {}
    for s, rows in sets.items():
        if not rows:
            continue
        out[s] = {}
        for m in final:
            keys = [(s, r["section_id"]) for r in rows]
            if any(k not in final[m] for k in keys):
                continue
            out[s][m] = {
                "raw": shares([raw[m].get(k, "") for k in keys]),
                "final": shares([final[m].get(k, "") for k in keys]),
            }
    return out


def _degeneration_md(report: dict[str, Any]) -> list[str]:
    from summ_assets.core.degeneration import FLAGS

    table = report.get("degeneration") or {}
    if not table:
        return []
    lines = [
        "## Degeneration (share of non-empty outputs)",
        "",
        "`raw` = the decoded generation (repetition control on, before the one-line, one-sentence cut); "
        "`final` = the summary the pipeline returns. Checks: a digit run of 8+, a 3-gram of words "
        "repeated 3+ times, a phrase repeated back to back, a comma-joined list repeating one item 3+ "
        "times, one word 4+ times (English function words aside), leaked markup (`{{`, `<!--`, `](`), a "
        "leaked HTML tag, a line break, more than one sentence (`core.degeneration`).",
        "",
        "| set | model | output | degenerate | " + " | ".join(FLAGS) + " |",
        "|---" * (len(FLAGS) + 4) + "|",
    ]
    for s, by_model in table.items():
        for m, both in by_model.items():
            for kind in ("raw", "final"):
                sh = both[kind]
                lines.append(
                    f"| {s} | {m} | {kind} | {sh['degenerate']:.0%} | "
                    + " | ".join(f"{sh[f]:.0%}" for f in FLAGS)
                    + " |"
                )
    cut = report.get("prompts_cut") or {}
    if cut:
        lines += [
            "",
            "Prompts cut by the token budget (`data.max_prompt_tokens`, after cleaning): "
            + ", ".join(f"{s} {c['truncated']}/{c['total']}" for s, c in cut.items())
            + ".",
        ]
    return [*lines, ""]


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")


def score_all(
    preds: dict[str, dict[tuple[str, str], str]],
    sets: dict[str, list[dict[str, Any]]],
    scorer: Any,
    baseline: tuple[float, float, float],
    profile: Any,
) -> dict[str, Any]:
    """Per-example scores and per-(set, model) aggregates with document-clustered CIs. A model scores a
    set only where it has a prediction for every row (the promoted student: val only).

    BERTScore: empty outputs are not scored (counted in ``n_empty``); the mean and CI are over the rest.
    """
    ev = profile.eval
    per_example: list[dict[str, Any]] = []
    tables: dict[str, dict[str, dict[str, Any]]] = {}
    for set_name, rows in sets.items():
        refs = [r["summary"] for r in rows]
        docs = [r["doc_id"] for r in rows]
        tables[set_name] = {}
        for model, by_key in preds.items():
            if not rows or any((set_name, r["section_id"]) not in by_key for r in rows):
                continue
            cands = [by_key[(set_name, r["section_id"])] for r in rows]
            kiwi = M.rouge_scores(cands, refs, "kiwi")
            ws = M.rouge_scores(cands, refs, "whitespace")
            ch = M.rouge_scores(cands, refs, "char")
            bs = M.bertscore_nonempty(scorer, cands, refs)
            for i, r in enumerate(rows):
                per_example.append(
                    {
                        "set": set_name,
                        "model": model,
                        "section_id": r["section_id"],
                        "doc_id": r["doc_id"],
                        "heading_path": r["heading_path"],
                        "reference": refs[i],
                        "prediction": cands[i],
                        **dict(kiwi[i].items()),
                        "rougeLsum_f_whitespace": ws[i]["rougeLsum_f"],
                        "rougeLsum_f_char": ch[i]["rougeLsum_f"],
                        "bertscore_p": bs["P"][i],
                        "bertscore_r": bs["R"][i],
                        "bertscore_f": bs["F"][i],
                    }
                )
            agg: dict[str, Any] = {"n": len(rows), "n_docs": len(set(docs))}
            for key in ("rouge1_f", "rouge2_f", "rougeLsum_f"):
                agg[key] = _mean([x[key] for x in kiwi])
            agg["rougeLsum_f_whitespace"] = _mean([x["rougeLsum_f"] for x in ws])
            agg["rougeLsum_f_char"] = _mean([x["rougeLsum_f"] for x in ch])
            scored = [i for i, f in enumerate(bs["F"]) if f is not None]
            for key, b in zip(("P", "R", "F"), baseline, strict=True):
                raw = _mean([bs[key][i] for i in scored])
                agg[f"bertscore_{key.lower()}"] = raw
                agg[f"bertscore_{key.lower()}_rescaled"] = M.rescale(raw, b) if scored else float("nan")
            agg["n_empty"] = len(bs["empty"])
            agg["n_bertscore_invalid"] = len(bs["invalid"])
            agg.update(M.output_stats(cands))
            ci = S.clustered_bootstrap_mean(
                [x["rougeLsum_f"] for x in kiwi],
                docs,
                n_samples=ev.bootstrap_samples,
                seed=ev.seed,
                alpha=ev.gate_alpha,
            )
            agg["rougeLsum_f_ci"] = [ci["low"], ci["high"]]
            agg["ci_unstable"] = ci["unstable"]
            if scored:
                ci = S.clustered_bootstrap_mean(
                    [bs["F"][i] for i in scored],
                    [docs[i] for i in scored],
                    n_samples=ev.bootstrap_samples,
                    seed=ev.seed,
                    alpha=ev.gate_alpha,
                )
                agg["bertscore_f_ci"] = [ci["low"], ci["high"]]
            tables[set_name][model] = agg
    return {"tables": tables, "per_example": per_example, "rouge_tokenizer": M.tokenizer_name("kiwi")}


# the paired comparisons of the report: (a, b) on ROUGE-Lsum, per set
COMPARISONS = (("student", "baseline"), ("teacher", "baseline"), ("student", "teacher"))


def comparisons(
    per_example: list[dict[str, Any]], profile: Any, metric: str = "rougeLsum_f"
) -> dict[str, Any]:
    """Per set: each pair in `COMPARISONS` (`core.stats.compare`: document-level sign-flip p, the CI
    by inverting it, the MDE with the design effect) and the teacher-baseline gap closed by
    distillation, reported only where teacher vs baseline is significant (p < eval.gate_alpha)."""
    ev = profile.eval
    out: dict[str, Any] = {}
    for s in sorted({x["set"] for x in per_example}):
        by_model: dict[str, dict[str, tuple[float, str]]] = {}
        for x in per_example:
            if x["set"] == s:
                by_model.setdefault(x["model"], {})[x["section_id"]] = (x[metric], x["doc_id"])
        res: dict[str, Any] = {}
        for a, b in COMPARISONS:
            if a not in by_model or b not in by_model:
                continue
            ids = sorted(set(by_model[a]) & set(by_model[b]))
            if not ids:
                continue
            res[f"{a} vs {b}"] = S.compare(
                [by_model[a][i][0] for i in ids],
                [by_model[b][i][0] for i in ids],
                [by_model[a][i][1] for i in ids],
                n_resamples=ev.permutation_resamples,
                n_samples=ev.bootstrap_samples,
                seed=ev.seed,
                alpha=ev.gate_alpha,
            )
        tb = res.get("teacher vs baseline")
        if tb and {"student", "baseline", "teacher"} <= set(by_model):
            if tb["p_value"] < ev.gate_alpha:
                ids = sorted(set(by_model["student"]) & set(by_model["baseline"]) & set(by_model["teacher"]))
                res["gap_closed"] = S.gap_closed(
                    [by_model["student"][i][0] for i in ids],
                    [by_model["baseline"][i][0] for i in ids],
                    [by_model["teacher"][i][0] for i in ids],
                    [by_model["student"][i][1] for i in ids],
                    n_samples=ev.bootstrap_samples,
                    seed=ev.seed,
                    alpha=ev.gate_alpha,
                )
            else:
                res["gap_closed"] = {
                    "not_reported": (
                        f"teacher vs baseline is not significant here (p = {tb['p_value']:.3f})"
                        if tb.get("testable", True)
                        else f"{tb['n_clusters']} documents cannot reach alpha {ev.gate_alpha}"
                    )
                }
        out[s] = res
    return out


COLUMNS = [
    ("rouge1_f", "R-1"),
    ("rouge2_f", "R-2"),
    ("rougeLsum_f", "R-Lsum"),
    ("bertscore_f", "BS-F1"),
    ("bertscore_f_rescaled", "BS-F1 resc."),
    ("n_empty", "empty"),
    ("mean_chars", "len"),
    ("multi_sentence_share", "multi-sent"),
]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def _ci(v: list[float] | None) -> str:
    return f"[{v[0]:.3f}, {v[1]:.3f}]" if v else ""


def _p(p: float) -> str:
    return f"{p:.4f}" if p >= 1e-4 else "< 0.0001"


def level_of(report: dict[str, Any]) -> str:
    """The confidence level of the report's intervals, from its alpha (eval.gate_alpha): "95%"."""
    return f"{1 - float(report.get('alpha', 0.05)):.0%}"


def _comparison_cells(c: dict[str, Any]) -> tuple[str, str]:
    """(CI, p) cells of a comparison row; a set whose documents are too few for any test to reach alpha
    says so instead of printing a p-value."""
    if not c.get("testable", True):
        return (
            "unbounded",
            f"not testable: {c['n_clusters']} documents, no p below {c['min_p']:.4f}",
        )
    p = _p(c["p_value"]) + (" (exact)" if c.get("exact") else "")
    return f"[{c['low']:+.4f}, {c['high']:+.4f}]", p


def markdown(report: dict[str, Any], charts_md: str = "") -> str:
    lines = [f"# Evaluation report ({report['profile']})", ""]
    bs = report["bertscore"]
    lines += [
        "**Which set drove which decision.** `val` (whole held-out documents) is used for selection: "
        "sweeps, epoch choice, early stopping and the promotion gates. Its figures are not claims. "
        "The claims come from the test sets, which no decision touched: `test_seen` (held-out sections "
        "of training documents), `test_similar` (reworded variants of training documents) and `test_new` "
        "(new documents and formats).",
        "",
        f"Scope: {report['scope']}."
        + "".join(
            f" Not generated: `{m}` ({why})." for m, why in report.get("models_not_generated", {}).items()
        ),
        "",
        f"ROUGE: `{report['rouge_tokenizer']}` (Kiwi morphemes, F1). BERTScore: `{bs['hash']}`, rescaled "
        f"with a baseline from {bs['baseline_pairs']} pairs of references from different documents in the "
        f"same language (P/R/F = {', '.join(f'{x:.3f}' for x in bs['baseline_pf_r_f'])}). Empty outputs "
        "are not BERTScored: they are counted in the `empty` column. The BERTScore model "
        f"(`{bs['model']}`) {bs['shares_weights']}",
        "",
        f"Level {level_of(report)} (alpha = eval.gate_alpha = {report.get('alpha', 0.05)}). Model rows: "
        "percentile intervals of a document-clustered bootstrap (documents are resampled, not sections). "
        "Comparisons, at the document level (sections of one document are not independent): p from a "
        "two-sided sign-flip test of the per-document sums of the differences (all sign patterns when "
        "there are few documents), the CI the values that test does not reject; with G documents no p "
        "goes below 2/2^G, so a set too small for alpha says 'not testable'. MDE: the smallest true "
        "difference a two-sided test at alpha detects with power 0.8, with the cluster-robust standard "
        "error (design effect included) and t with G-1 degrees of freedom.",
        "",
    ]
    level = level_of(report)
    for set_name, by_model in report["tables"].items():
        info = report["sets"][set_name]
        lines += [
            f"## {set_name}: {info['role']}",
            "",
            f"n = {info['n']} of {info['n_total']} ({info['n_docs']} documents)"
            + (" — few documents: the clustered interval is unstable" if info["n_docs"] < 10 else ""),
            "",
            "| model | " + " | ".join(c for _, c in COLUMNS) + f" | R-Lsum {level} CI | BS-F1 {level} CI |",
            "|---" * (len(COLUMNS) + 3) + "|",
        ]
        for model, agg in by_model.items():
            lines.append(
                f"| {model} | "
                + " | ".join(_fmt(agg.get(k)) for k, _ in COLUMNS)
                + f" | {_ci(agg.get('rougeLsum_f_ci'))} | {_ci(agg.get('bertscore_f_ci'))} |"
            )
        comp = report["comparisons"].get(set_name, {})
        if comp:
            lines += [
                "",
                f"| ROUGE-Lsum comparison | mean diff | {level} CI (documents) | p (documents) | MDE | "
                "wins/losses/ties |",
                "|---|---|---|---|---|---|",
            ]
            for name, c in comp.items():
                if name == "gap_closed":
                    continue
                ci_cell, p_cell = _comparison_cells(c)
                lines.append(
                    f"| {name} | {c['mean_diff']:+.4f} | {ci_cell} | {p_cell} | {c['mde']:.4f} | "
                    f"{c['wins']}/{c['losses']}/{c['ties']} |"
                )
            g = comp.get("gap_closed")
            if g and "ratio" in g:
                lines += [
                    "",
                    f"Teacher-baseline gap closed by distillation: {g['ratio']:.2f} [{g['low']:.2f}, {g['high']:.2f}]",
                ]
            elif g:
                lines += ["", f"Gap closed: not reported ({g['not_reported']})."]
        lines.append("")
    lines += _degeneration_md(report)
    lines += [
        "## Speed and size (forced-length decoding, so stopping early does not count)",
        "",
        "decode tok/s: the steps after the first token (prefill apart); end-to-end: every token over the"
        " whole call, prefill of the prompt included.",
        "",
    ]
    lines += [
        "| model | parameters | decode tok/s | end-to-end tok/s | prefill s | batch x tokens |",
        "|---|---|---|---|---|---|",
    ]
    for model, inf in report["models"].items():
        sp = inf["speed"]
        e2e, pre = sp.get("end_to_end_tokens_per_s"), sp.get("prefill_seconds")
        lines.append(
            f"| {model} | {inf['parameters'] / 1e6:.1f}M | {sp['tokens_per_s']:.1f} | "
            f"{'n/a' if e2e is None else f'{e2e:.1f}'} | {'n/a' if pre is None else f'{pre:.2f}'} | "
            f"{sp['batch']} x {sp['tokens']} |"
        )
    lines.append("")
    if report.get("ranking"):
        lines += [
            "## Ranking (do ROUGE and BERTScore order the models the same way?)",
            "",
            "| set | by ROUGE-Lsum | by BERTScore F1 | same order |",
            "|---|---|---|---|",
        ]
        for set_name, r in report["ranking"].items():
            lines.append(
                f"| {set_name} | {' > '.join(r['rougeLsum'])} | {' > '.join(r['bertscore'])} | "
                f"{'yes' if r['same_order'] else '**no**'} |"
            )
        lines.append("")
    lines += ["## Gates (val only)", "", "| gate | passed | why |", "|---|---|---|"]
    for g in report["gates"].values():
        lines.append(f"| {g['name']} | {'yes' if g['passed'] else '**no**'} | {'; '.join(g['reasons'])} |")
    lines.append("")
    if report.get("losses"):
        lines += [
            "## Validation loss (val drove early stopping)",
            "",
            "Per summary token depends on the tokenizer (a trimmed student spells text outside its training"
            " set in more pieces); bits per byte of the summary text compares models across vocabularies.",
            "",
            "| model | bits per byte | per token |",
            "|---|---|---|",
        ]
        for k, v in report["losses"].items():
            v = v if isinstance(v, dict) else {"loss": v}  # reports written before bits per byte
            bpb = v.get("bits_per_byte")
            lines.append(f"| {k} | {'n/a' if bpb is None else f'{bpb:.4f}'} | {v['loss']:.4f} |")
        lines.append("")
    if charts_md:
        lines += ["## Charts", "", charts_md, ""]
    return "\n".join(lines)


def charts(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """`scores.png` (ROUGE-Lsum with clustered CIs per set and model) and `gain.png` (student - baseline
    and teacher - baseline per set with CIs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(report["tables"])
    models = sorted({m for s in sets for m in report["tables"][s]}, key=lambda m: (m != "teacher", m))
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / max(len(models), 1)
    for i, m in enumerate(models):
        xs, ys, lo, hi = [], [], [], []
        for j, s in enumerate(sets):
            agg = report["tables"][s].get(m)
            if agg:
                xs.append(j + i * width)
                ys.append(agg["rougeLsum_f"])
                lo.append(max(0.0, agg["rougeLsum_f"] - agg["rougeLsum_f_ci"][0]))  # >= 0 despite rounding
                hi.append(max(0.0, agg["rougeLsum_f_ci"][1] - agg["rougeLsum_f"]))
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=m)
    ax.set_xticks([x + width * (len(models) - 1) / 2 for x in range(len(sets))], sets)
    ax.set_ylabel("ROUGE-Lsum F1 (Kiwi)")
    ax.set_title(
        f"ROUGE-Lsum with {level_of(report)} document-clustered CIs ({report['profile']}); val = used for selection"
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths = [out_dir / "scores.png"]
    fig.savefig(paths[0], dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 4))
    for k, name in enumerate(("student vs baseline", "teacher vs baseline")):
        xs, ys, lo, hi = [], [], [], []
        for j, s in enumerate(sets):
            c = report["comparisons"].get(s, {}).get(name)
            if c:
                xs.append(j + k * 0.35)
                ys.append(c["mean_diff"])
                # an untestable set's interval is unbounded: no error bar (the table says why)
                lo.append(max(0.0, c["mean_diff"] - c["low"]) if math.isfinite(c["low"]) else 0.0)
                hi.append(max(0.0, c["high"] - c["mean_diff"]) if math.isfinite(c["high"]) else 0.0)
        ax.bar(xs, ys, 0.35, yerr=[lo, hi], capsize=3, label=name)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks([x + 0.175 for x in range(len(sets))], sets)
    ax.set_ylabel("paired ROUGE-Lsum difference")
    ax.set_title(
        f"Distillation gain (student - baseline) and teacher - baseline, {level_of(report)} document-level CIs"
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out_dir / "gain.png")
    fig.savefig(paths[1], dpi=90)
    plt.close(fig)
    return paths


def inline_png(path: Path, alt: str) -> str:
    """A PNG as inline Markdown (a data URI), so the chart renders on the asset's page in the UI."""
    import base64

    return f"![{alt}](data:image/png;base64,{base64.b64encode(Path(path).read_bytes()).decode()})"


def write_report(report: dict[str, Any], per_example: list[dict[str, Any]], out_dir: Path) -> dict[str, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(
        json.dumps(report, indent=2, ensure_ascii=False, default=float) + "\n"
    )
    pngs = charts(report, out_dir)
    (out_dir / "report.md").write_text(
        markdown(report, "\n\n".join(f"![{p.stem}]({p.name})" for p in pngs)) + "\n"
    )
    pq.write_table(pa.Table.from_pylist(per_example), out_dir / "predictions.parquet", compression="zstd")
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
