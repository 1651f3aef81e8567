"""Quality gates on the evaluation report: blocking checks, and promotion that never regresses."""

from __future__ import annotations

from summ_assets.defs.evaluation import (
    metric_sanity,
    student_not_worse_than_baseline,
    student_outputs_not_empty,
)
from summ_assets.defs.resources import SummSettings


def _report(student: float, baseline: float, empty: float = 0.0) -> dict:
    row = {"rouge1_f": 0.3, "rouge2_f": 0.1, "bertscore_p": 0.8, "bertscore_r": 0.8, "bertscore_f": 0.8}
    return {
        "report": {
            "tables": {
                "val": {
                    "student": {**row, "rougeLsum_f": student, "empty_share": empty},
                    "baseline": {**row, "rougeLsum_f": baseline, "empty_share": 0.0},
                }
            },
            "paired": {"val": {"mean_diff": student - baseline}},
        }
    }


def test_gates_are_blocking_checks() -> None:
    for check in (student_not_worse_than_baseline, student_outputs_not_empty, metric_sanity):
        assert all(spec.blocking for spec in check.check_specs), check


def test_student_worse_than_baseline_beyond_tolerance_fails_the_gate() -> None:
    settings = SummSettings(profile="demo")  # tolerance 0.02
    assert student_not_worse_than_baseline(_report(0.25, 0.24), settings).passed
    assert student_not_worse_than_baseline(_report(0.23, 0.24), settings).passed  # within tolerance
    failed = student_not_worse_than_baseline(_report(0.20, 0.24), settings)
    assert not failed.passed
    assert "0.2000 < baseline 0.2400" in failed.metadata["reasons"].value


def test_mostly_empty_student_fails_the_empty_output_gate() -> None:
    settings = SummSettings(profile="demo")  # at most 50 % empty
    assert student_outputs_not_empty(_report(0.3, 0.2, empty=0.1), settings).passed
    assert not student_outputs_not_empty(_report(0.3, 0.2, empty=0.9), settings).passed


def test_metric_sanity_catches_f1_above_precision_and_recall() -> None:
    good = _report(0.3, 0.2)
    assert metric_sanity(good).passed
    bad = _report(0.3, 0.2)
    bad["report"]["tables"]["val"]["student"]["bertscore_f"] = 0.95  # > max(P, R) = 0.8
    assert not metric_sanity(bad).passed
