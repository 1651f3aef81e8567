"""The promotion gates. Each takes val scores only (the signatures hold no test set), so no claim set
can reach a decision; each returns a `GateResult` whose reasons carry the numbers.

- `baseline_gate`: the distilled student vs its CE baseline on val by a CI rule (document-clustered
  bootstrap of the paired difference): ``not_worse`` fails when the whole interval lies below 0,
  ``better`` fails unless it lies above 0; ``report_only`` records the numbers and passes (the `tiny`
  test profile: random-weight models, whose comparison is noise).
- `regress_gate`: the new student vs the promoted one on the same val examples, a non-inferiority test
  (margin stated); not counted when the promoted model trained on a section that is now in val.
- `empty_gate`: the share of empty student outputs on val.
- `sanity_gate`: the metric sanity problems (`core.metrics.sanity_problems`).
A missing or empty val set fails every gate that needs it, with a message; no other set stands in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from summ_assets.core import stats

NO_VAL = (
    "no val examples: the gates score val only (no other set stands in); check the summary_dataset splits"
)


@dataclass
class GateResult:
    name: str
    passed: bool
    reasons: list[str]
    numbers: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ValScores:
    """One model's val scores, aligned by section id: {section_id: score}, plus each section's document."""

    scores: dict[str, float]
    docs: dict[str, str]


def _paired(a: ValScores, b: ValScores) -> tuple[list[float], list[float], list[str]]:
    """Aligned scores and their clusters: the documents, or the sections themselves when val holds a
    single document (a one-cluster bootstrap has no spread and would decide on a point)."""
    ids = sorted(set(a.scores) & set(b.scores))
    docs = [a.docs[i] for i in ids]
    if len(set(docs)) < 2:
        docs = ids
    return [a.scores[i] for i in ids], [b.scores[i] for i in ids], docs


def baseline_gate(
    student: ValScores, baseline: ValScores, *, rule: str, alpha: float, n_samples: int, seed: int
) -> GateResult:
    name = "student_vs_baseline"
    s, b, docs = _paired(student, baseline)
    if not s:
        return GateResult(name, False, [NO_VAL])
    d = stats.cluster_sign_flip_interval(s, b, docs, n_resamples=n_samples, seed=seed, alpha=alpha)
    level = f"{1 - alpha:.0%}"
    ci = f"[{d['low']:+.4f}, {d['high']:+.4f}]"
    numbers = {"rule": rule, **d}
    if math.isinf(d["low"]) and math.isinf(d["high"]):
        ci = (
            f"unbounded: {d['n_clusters']} val documents cannot reach alpha {alpha} (no two-sided p below "
            f"{2 / 2 ** d['n_clusters']:.4f}), so this gate cannot tell the student from the baseline"
        )
    if rule == "report_only":
        return GateResult(
            name,
            True,
            [f"report only (rule 'report_only'): mean diff {d['mean_diff']:+.4f}, {level} CI {ci}"],
            numbers,
        )
    if rule == "not_worse" and d["high"] < 0:
        return GateResult(
            name,
            False,
            [
                f"student worse than baseline on val ROUGE-Lsum: mean diff {d['mean_diff']:+.4f}, {level} "
                f"document-level CI {ci} lies below 0 (n={d['n']}, {d['n_clusters']} documents)"
            ],
            numbers,
        )
    if rule == "better" and not d["low"] > 0:
        return GateResult(
            name,
            False,
            [
                f"student not shown better than baseline on val ROUGE-Lsum: mean diff {d['mean_diff']:+.4f}, "
                f"{level} CI {ci} reaches 0 (rule 'better'; n={d['n']}, {d['n_clusters']} documents)"
            ],
            numbers,
        )
    return GateResult(
        name, True, [f"passed ({rule}): mean diff {d['mean_diff']:+.4f}, {level} CI {ci}"], numbers
    )


def regress_gate(
    new: ValScores,
    promoted: ValScores | None,
    *,
    comparable: tuple[bool, str],
    margin: float,
    alpha: float,
    n_samples: int,
    seed: int,
    sizes: dict[str, Any] | None = None,
) -> GateResult:
    """`promoted` None: nothing promoted yet (passes). `comparable` = (whether the promoted model's
    training data shares no section with the current val, why not)."""
    name = "student_vs_promoted"
    numbers: dict[str, Any] = {"margin": margin, **(sizes or {})}
    ok, why = comparable
    if why == "same_model":
        version = (sizes or {}).get("promoted_version")
        return GateResult(
            name,
            True,
            [f"the promoted student is this student (version {version}): it is not compared with itself"],
            numbers,
        )
    if promoted is None:
        return GateResult(name, True, ["nothing promoted yet: nothing to regress from"], numbers)
    if not ok:
        return GateResult(name, True, [f"not comparable: {why}; the baseline gate decides"], numbers)
    a, b, docs = _paired(new, promoted)
    if not a:
        return GateResult(name, False, [NO_VAL], numbers)
    r = stats.non_inferiority(a, b, docs, margin=margin, n_samples=n_samples, seed=seed, alpha=alpha)
    numbers.update(r)
    text = (
        f"new - promoted val ROUGE-Lsum {r['mean_diff']:+.4f}, one-sided {1 - alpha:.0%} lower bound "
        f"{r['lower_bound']:+.4f} vs margin -{margin}, p {r['p_value']:.4f} (n={r['n']}, {r['n_clusters']} documents)"
    )
    if not r["passed"]:
        return GateResult(
            name, False, [f"worse than the promoted student beyond the margin: {text}"], numbers
        )
    return GateResult(name, True, [f"passed non-inferiority: {text}"], numbers)


def empty_gate(student_val_predictions: Sequence[str], max_share: float) -> GateResult:
    name = "student_outputs_not_empty"
    n = len(student_val_predictions)
    if n == 0:
        return GateResult(name, False, [NO_VAL])
    share = sum(1 for p in student_val_predictions if not p.strip()) / n
    numbers = {"empty_share": share, "n": n, "max_share": max_share}
    if share > max_share:
        return GateResult(
            name, False, [f"student empty outputs on val {share:.0%} > {max_share:.0%}"], numbers
        )
    return GateResult(name, True, [f"passed: {share:.0%} empty (at most {max_share:.0%})"], numbers)


def degeneration_gate(student_val_predictions: Sequence[str], max_share: float) -> GateResult:
    """At most `max_share` of the student's non-empty final val summaries are degenerate
    (`core.degeneration.flags`)."""
    from summ_assets.core.degeneration import shares

    name = "student_not_degenerate"
    if not student_val_predictions:
        return GateResult(name, False, [NO_VAL])
    sh = shares(list(student_val_predictions))
    numbers = {"degenerate_share": sh["degenerate"], "n": sh["n"], "max_share": max_share}
    numbers.update({f"{k}_share": v for k, v in sh.items() if k not in ("n", "empty", "degenerate")})
    worst = ", ".join(f"{k} {v:.0%}" for k, v in sh.items() if k not in ("n", "empty", "degenerate") and v)
    if sh["degenerate"] > max_share:
        return GateResult(
            name,
            False,
            [f"student degenerate outputs on val {sh['degenerate']:.0%} > {max_share:.0%} ({worst})"],
            numbers,
        )
    return GateResult(
        name, True, [f"passed: {sh['degenerate']:.0%} degenerate (at most {max_share:.0%})"], numbers
    )


def sanity_gate(problems: Sequence[str], sanity: dict[str, Any]) -> GateResult:
    return GateResult("metric_sanity", not problems, list(problems) or ["passed"], dict(sanity))


def training_overlap(promoted_train_ids: set[str] | None, val_ids: set[str]) -> tuple[bool, str]:
    """Whether a promoted model can be compared on the current val: it must not have trained on any of
    its sections (after a re-split it may have)."""
    if promoted_train_ids is None:
        return False, "the promoted model's training data is unknown (its pointer predates this record)"
    shared = promoted_train_ids & val_ids
    if shared:
        return (
            False,
            f"the promoted model trained on {len(shared)} section(s) now in val (the splits changed)",
        )
    return True, ""
