"""Quality gates: blocking checks that can fail, a baseline gate by a CI rule, never-regress promotion."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from summ_assets.core import gates as G
from summ_assets.core import metrics as M
from summ_assets.defs.evaluation import (
    _check,
    metric_sanity,
    student_not_degenerate,
    student_not_worse_than_baseline,
    student_not_worse_than_promoted,
    student_outputs_not_empty,
)
from summ_assets.stages.evaluation import _val_scores, promote

DOCS = [f"raw/d{i}.md" for i in range(12)]


def _scores(mean: float, seed: int, n: int = 48, noise: float = 0.08) -> G.ValScores:
    rng = np.random.default_rng(seed)
    ids = [f"s{i}" for i in range(n)]
    return G.ValScores(
        {i: float(np.clip(mean + rng.normal(0, noise), 0, 1)) for i in ids},
        {i: DOCS[k % len(DOCS)] for k, i in enumerate(ids)},
    )


def _gate(student: G.ValScores, baseline: G.ValScores, rule: str = "not_worse") -> G.GateResult:
    return G.baseline_gate(student, baseline, rule=rule, alpha=0.05, n_samples=1000, seed=0)


def _regress(
    new: G.ValScores, old: G.ValScores | None, comparable: tuple[bool, str] = (True, "")
) -> G.GateResult:
    return G.regress_gate(
        new,
        old,
        comparable=comparable,
        margin=0.03,
        alpha=0.05,
        n_samples=1000,
        seed=0,
        sizes={"new_parameters": 100, "promoted_parameters": 200},
    )


def _report(student: str, gates: list[G.GateResult], parameters: int = 100) -> dict:
    return {
        "path": f"/reports/{student}",
        "gates": {g.name: g.as_dict() for g in gates},
        "models": {"student": {"parameters": parameters}},
        "lineage": {"student": f"/models/{student}", "student_version": student, "summary_dataset": "/ds"},
    }


def test_every_gate_is_a_blocking_check() -> None:
    for check in (
        student_not_worse_than_baseline,
        student_not_worse_than_promoted,
        student_outputs_not_empty,
        student_not_degenerate,
        metric_sanity,
    ):
        assert all(spec.blocking for spec in check.check_specs), check


def test_baseline_gate_fails_only_when_the_ci_says_worse() -> None:
    base = _scores(0.30, seed=1)
    clearly_worse = _gate(_scores(0.15, seed=2), base)
    assert not clearly_worse.passed
    assert "lies below 0" in clearly_worse.reasons[0] and clearly_worse.numbers["high"] < 0
    assert _gate(_scores(0.30, seed=3), base).passed  # no evidence of harm: passes "not_worse"
    # the stricter rule wants evidence of a gain
    assert not _gate(base, base, rule="better").passed
    assert _gate(_scores(0.45, seed=4), base, rule="better").passed


def test_a_val_set_too_small_for_alpha_says_the_gate_cannot_tell() -> None:
    """5 val documents: no two-sided p below 0.0625; the gate says so instead of showing a CI."""

    def five_docs(v: G.ValScores) -> G.ValScores:
        return G.ValScores(v.scores, {i: f"raw/d{k % 5}.md" for k, i in enumerate(v.scores)})

    worse = _gate(five_docs(_scores(0.15, seed=2)), five_docs(_scores(0.30, seed=1)))
    assert worse.passed  # rule not_worse: no evidence possible, no failure
    assert "5 val documents cannot reach alpha 0.05 (no two-sided p below 0.0625)" in worse.reasons[0]
    better = _gate(five_docs(_scores(0.45, seed=4)), five_docs(_scores(0.30, seed=1)), rule="better")
    assert not better.passed and "cannot tell the student from the baseline" in better.reasons[0]


def test_a_missing_val_set_fails_the_gates_with_a_message_instead_of_scoring_another_set() -> None:
    empty = G.ValScores({}, {})
    for result in (_gate(empty, empty), _regress(empty, empty), G.empty_gate([], 0.2)):
        assert not result.passed and result.reasons == [G.NO_VAL]
    per_example_without_val = [
        {"set": "test_new", "model": m, "section_id": "x", "doc_id": "eval/new/a.md", "rougeLsum_f": 0.9}
        for m in ("student", "baseline")
    ]
    assert _val_scores(per_example_without_val, "student") == empty
    # a report without the gate's result fails the check too
    assert not _check({"report": {"gates": {}}}, "student_vs_baseline").passed


def test_gates_only_see_val_rows() -> None:
    rows = []
    for model, base in (("student", 0.3), ("baseline", 0.3)):
        for i in range(20):
            rows.append(
                {
                    "set": "val",
                    "model": model,
                    "section_id": f"v{i}",
                    "doc_id": DOCS[i % 12],
                    "rougeLsum_f": base,
                }
            )
    poisoned = rows + [
        {"set": s, "model": "student", "section_id": f"t{i}", "doc_id": "eval/new/a.md", "rougeLsum_f": 0.0}
        for s in ("test_seen", "test_similar", "test_new")
        for i in range(30)
    ]
    clean = _gate(_val_scores(rows, "student"), _val_scores(rows, "baseline"))
    dirty = _gate(_val_scores(poisoned, "student"), _val_scores(poisoned, "baseline"))
    assert clean == dirty and clean.passed


def test_never_regress_promote_a_then_a_worse_b_keeps_a(tmp_path: Path) -> None:
    pointer = tmp_path / "promoted" / "current.json"
    a = _scores(0.35, seed=5)
    ok = [_gate(a, _scores(0.30, seed=6)), _regress(a, None), G.empty_gate(["요약."] * 48, 0.2)]
    first = promote(pointer, _report("A", ok, parameters=200))
    assert first["promoted_now"] and json.loads(pointer.read_text())["version"] == "A"

    b = _scores(0.20, seed=7)  # a retrain that is clearly worse than A
    regress = _regress(b, a)
    assert not regress.passed and "beyond the margin" in regress.reasons[0]
    second = promote(pointer, _report("B", [_gate(b, _scores(0.20, seed=8)), regress]))
    assert not second["promoted_now"]
    assert json.loads(pointer.read_text())["version"] == "A"  # the pointer stays on A
    assert any("student_vs_promoted" in r for r in second["reasons"])
    check = _check({"report": _report("B", [regress])}, "student_vs_promoted")
    assert not check.passed and "beyond the margin" in check.metadata["reasons"].value
    assert check.metadata["lower_bound"].value < -0.03


def test_a_smaller_student_within_the_margin_may_replace_a_larger_one(tmp_path: Path) -> None:
    a = _scores(0.35, seed=5)
    small = G.ValScores({k: v - 0.005 for k, v in a.scores.items()}, a.docs)
    r = _regress(small, a)
    assert r.passed and r.numbers["new_parameters"] == 100 and r.numbers["promoted_parameters"] == 200
    pointer = tmp_path / "current.json"
    assert promote(pointer, _report("small", [r], parameters=100))["promoted_now"]
    assert json.loads(pointer.read_text())["parameters"] == 100


def test_not_comparable_after_a_re_split_says_why_and_leaves_the_baseline_gate_to_decide() -> None:
    ok, why = G.training_overlap({"s1", "s2"}, {"s2", "s3"})
    assert not ok and "1 section(s) now in val" in why
    r = _regress(_scores(0.1, seed=1), _scores(0.9, seed=2), comparable=(ok, why))
    assert r.passed and r.reasons[0].startswith("not comparable")
    assert not G.training_overlap(None, {"s1"})[0]
    assert G.training_overlap({"s9"}, {"s1"}) == (True, "")


def test_mostly_empty_student_fails_the_empty_output_gate() -> None:
    assert G.empty_gate(["요약."] * 9 + [""], 0.2).passed
    failed = G.empty_gate(["요약."] * 5 + [" "] * 5, 0.2)
    assert not failed.passed and failed.numbers["empty_share"] == 0.5


def test_sanity_gate_fails_on_crafted_bad_numbers() -> None:
    good = {
        "rouge_self": 1.0,
        "rouge_shuffled": 0.1,
        "bertscore_self": 1.0,
        "bertscore_shuffled_rescaled": 0.02,
    }
    assert G.sanity_gate(M.sanity_problems(good), good).passed
    for bad in (
        {**good, "rouge_self": 0.4},  # a metric that does not give 1 to a perfect match
        {**good, "bertscore_shuffled_rescaled": 0.6},  # a wrong rescaling baseline
        {**good, "rouge_shuffled": 0.9},  # a metric that cannot tell summaries apart
        {},  # nothing scored (no val)
    ):
        assert not G.sanity_gate(M.sanity_problems(bad), bad).passed, bad


def test_degeneration_gate_fails_above_its_share_and_names_the_checks() -> None:
    clean = ["배포는 단계적으로 진행하고 지표를 확인한다."] * 9
    bad = ["컴포넌트는 100000000000000000 이다."]
    assert G.degeneration_gate(clean + bad, 0.1).passed  # 1 of 10 = 10 %: at the limit
    failed = G.degeneration_gate(clean[:8] + bad * 2, 0.1)
    assert not failed.passed and "20% > 10%" in failed.reasons[0] and "digit_run 20%" in failed.reasons[0]
    assert failed.numbers["digit_run_share"] == 0.2
    assert not G.degeneration_gate([], 0.1).passed  # no val: the gate fails with a message


def test_the_never_regress_gate_says_when_the_promoted_model_is_the_new_one() -> None:
    """It used to compare the promoted student with itself and pass on a difference of 0."""
    scores = G.ValScores({"a": 0.5, "b": 0.4}, {"a": "d1", "b": "d2"})
    g = G.regress_gate(
        scores,
        G.ValScores({}, {}),
        comparable=(False, "same_model"),
        margin=0.03,
        alpha=0.05,
        n_samples=100,
        seed=0,
        sizes={"promoted_version": "v1"},
    )
    assert g.passed and "is this student (version v1): it is not compared with itself" in g.reasons[0]
    assert "mean_diff" not in g.numbers
