"""`core.stats`: the permutation test against brute force, the clustered bootstrap against hand-made
document-level bootstraps, and the report helpers on inputs whose answer is known."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.stats import norm

from summ_assets.core import stats

# --- paired permutation test ------------------------------------------------------------------------

# differences include ties (three 1.0s, two -0.5s) and a zero; dyadic values keep the means exact
TINY = {
    "positive": ([3.0, 1.0, 2.5, 4.0, 2.0, 1.5, 5.0], [1.0, 1.0, 2.0, 3.0, 2.5, 0.5, 4.0]),
    "negative": ([0.0, 2.0, 1.0, 1.0, 3.0, 0.25], [1.0, 2.0, 1.5, 2.0, 3.5, 0.25]),
}


def _brute_force_p(a: list[float], b: list[float], alternative: str) -> float:
    d = np.subtract(a, b)
    observed = d.mean()
    flipped = np.array([np.mean(np.multiply(s, d)) for s in itertools.product([1, -1], repeat=len(d))])
    if alternative == "greater":
        return float(np.mean(flipped >= observed))
    if alternative == "less":
        return float(np.mean(flipped <= observed))
    # two-sided: the sign-flip null is symmetric, so scipy's min(2 P(T<=t), 2 P(T>=t)) (clipped to 1)
    # equals the textbook share of flips at least as extreme in absolute value
    textbook = float(np.mean(np.abs(flipped) >= abs(observed)))
    doubled = min(1.0, 2 * min(np.mean(flipped <= observed), np.mean(flipped >= observed)))
    assert textbook == pytest.approx(doubled, abs=1e-12)
    return textbook


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
@pytest.mark.parametrize("case", sorted(TINY))
def test_permutation_test_matches_brute_force_enumeration(case: str, alternative: str) -> None:
    a, b = TINY[case]
    res = stats.paired_permutation_test(a, b, alternative=alternative)
    assert res["exact"] is True
    assert res["n"] == len(a)
    assert res["mean_diff"] == pytest.approx(np.mean(np.subtract(a, b)), abs=1e-12)
    assert res["p_value"] == pytest.approx(_brute_force_p(a, b, alternative), abs=1e-12)


def test_permutation_test_is_randomised_when_2_to_the_n_exceeds_n_resamples() -> None:
    a, b = TINY["positive"]
    assert stats.paired_permutation_test(a, b, n_resamples=127)["exact"] is False
    assert stats.paired_permutation_test(a, b, n_resamples=128)["exact"] is True


def test_large_clear_effect_gives_small_p_and_identical_inputs_give_p_1() -> None:
    rng = np.random.default_rng(0)
    b = rng.normal(size=200)
    a = b + 1.0 + rng.normal(scale=0.5, size=200)
    res = stats.paired_permutation_test(a, b)
    assert res["exact"] is False
    assert res["p_value"] < 1e-3
    assert stats.paired_permutation_test(a, b, alternative="greater")["p_value"] < 1e-3
    assert stats.paired_permutation_test(a, b, alternative="less")["p_value"] > 0.99
    assert stats.paired_permutation_test(b, b)["p_value"] == 1.0


# --- clustered bootstrap ----------------------------------------------------------------------------


def _documents(n_docs: int, per_doc: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every example of a document shares its document's value; documents differ."""
    doc_values = np.random.default_rng(seed).normal(size=n_docs)
    values = np.repeat(doc_values, per_doc)
    clusters = [f"doc{i}" for i in range(n_docs) for _ in range(per_doc)]
    return doc_values, values, clusters


def test_clustered_ci_equals_a_bootstrap_of_document_means_for_equal_sized_documents() -> None:
    doc_values, values, clusters = _documents(n_docs=30, per_doc=8)
    res = stats.clustered_bootstrap_mean(values, clusters, n_samples=2000, seed=3)

    idx = np.random.default_rng(3).integers(0, 30, size=(2000, 30))
    by_hand = np.quantile(doc_values[idx].mean(axis=1), [0.025, 0.975])
    assert (res["low"], res["high"]) == pytest.approx(tuple(by_hand), abs=1e-12)
    assert res["mean"] == pytest.approx(doc_values.mean())
    assert (res["n"], res["n_clusters"], res["unstable"]) == (240, 30, False)

    # the example order does not matter beyond the draws: shuffled, the width agrees statistically
    order = np.random.default_rng(4).permutation(len(values))
    shuffled = stats.clustered_bootstrap_mean(values[order], [clusters[i] for i in order], seed=3)
    width, by_hand_width = shuffled["high"] - shuffled["low"], by_hand[1] - by_hand[0]
    assert width == pytest.approx(by_hand_width, rel=0.15)


def test_unequal_documents_weigh_by_size_in_each_resample() -> None:
    # the statistic is the mean over all drawn examples (sum of drawn sums / sum of drawn counts),
    # not the mean of drawn document means, and not the drawn sums over the original n
    sizes = np.array([1, 7, 2, 12, 3, 1, 5, 9, 2, 4, 6, 1])
    rng = np.random.default_rng(13)
    values = rng.normal(size=sizes.sum())
    codes = np.repeat(np.arange(sizes.size), sizes)
    res = stats.clustered_bootstrap_mean(values, [f"d{c}" for c in codes], n_samples=500, seed=2)

    sums, counts = np.bincount(codes, weights=values), np.bincount(codes)
    idx = np.random.default_rng(2).integers(0, sizes.size, size=(500, sizes.size))
    by_hand = np.quantile(sums[idx].sum(axis=1) / counts[idx].sum(axis=1), [0.025, 0.975])
    assert (res["low"], res["high"]) == pytest.approx(tuple(by_hand), abs=1e-12)
    assert res["mean"] == pytest.approx(values.mean())


def test_clustered_ci_is_much_wider_than_a_naive_bootstrap_with_few_large_documents() -> None:
    _, values, clusters = _documents(n_docs=6, per_doc=40, seed=1)
    values = values + np.random.default_rng(2).normal(scale=0.05, size=values.size)
    clustered = stats.clustered_bootstrap_mean(values, clusters)
    naive = stats.clustered_bootstrap_mean(values, list(range(values.size)))  # every example its own
    assert clustered["high"] - clustered["low"] > 3 * (naive["high"] - naive["low"])
    assert clustered["unstable"] is True and naive["unstable"] is False


def test_one_example_per_cluster_is_an_ordinary_bootstrap() -> None:
    rng = np.random.default_rng(5)
    widths = {}
    for n in (50, 800):
        values = rng.normal(loc=2.0, size=n)
        res = stats.clustered_bootstrap_mean(values, [str(i) for i in range(n)], n_samples=4000)
        assert res["low"] < values.mean() < res["high"]
        widths[n] = res["high"] - res["low"]
        normal_width = 2 * norm.ppf(0.975) * values.std(ddof=1) / math.sqrt(n)
        assert widths[n] == pytest.approx(normal_width, rel=0.15)
    assert widths[800] < widths[50] / 3  # ~ 1/sqrt(16) = 1/4


def test_clustered_bootstrap_diff_is_the_bootstrap_of_a_minus_b() -> None:
    _, a, clusters = _documents(n_docs=12, per_doc=3, seed=6)
    b = a[::-1] * 0.5
    diff = stats.clustered_bootstrap_diff(a, b, clusters, seed=9)
    mean = stats.clustered_bootstrap_mean(a - b, clusters, seed=9)
    assert diff == {"mean_diff": mean["mean"], **{k: v for k, v in mean.items() if k != "mean"}}


def test_unstable_below_ten_clusters() -> None:
    for k, unstable in ((9, True), (10, False)):
        _, values, clusters = _documents(n_docs=k, per_doc=2)
        assert stats.clustered_bootstrap_mean(values, clusters)["unstable"] is unstable
        assert stats.clustered_bootstrap_diff(values, values * 0, clusters)["unstable"] is unstable
    assert stats.MIN_STABLE_CLUSTERS == 10


def test_bootstrap_is_deterministic_for_a_seed() -> None:
    _, values, clusters = _documents(n_docs=15, per_doc=3)
    first = stats.clustered_bootstrap_mean(values, clusters, seed=11)
    assert stats.clustered_bootstrap_mean(values, clusters, seed=11) == first
    other = stats.clustered_bootstrap_mean(values, clusters, seed=12)
    assert (other["low"], other["high"]) != (first["low"], first["high"])


# --- minimum detectable difference ------------------------------------------------------------------


def test_min_detectable_difference_matches_the_hand_computation() -> None:
    d = np.random.default_rng(7).normal(0.1, 0.4, size=60)
    hand = (norm.ppf(0.975) + norm.ppf(0.8)) * np.std(d, ddof=1) / math.sqrt(60)
    assert stats.min_detectable_difference(d) == pytest.approx(hand, rel=1e-12)
    hand_strict = (norm.ppf(0.995) + norm.ppf(0.9)) * np.std(d, ddof=1) / math.sqrt(60)
    assert stats.min_detectable_difference(d, alpha=0.01, power=0.9) == pytest.approx(hand_strict, rel=1e-12)
    assert math.isnan(stats.min_detectable_difference([0.3]))
    assert math.isnan(stats.min_detectable_difference([]))


def test_min_detectable_difference_shrinks_like_one_over_sqrt_n() -> None:
    def unit_sd(n: int) -> np.ndarray:
        z = np.random.default_rng(n).normal(size=n)
        return (z - z.mean()) / z.std(ddof=1)

    assert stats.min_detectable_difference(unit_sd(400)) == pytest.approx(
        stats.min_detectable_difference(unit_sd(100)) / 2, rel=1e-12
    )


# --- gap closed, non-inferiority, compare -----------------------------------------------------------


def _three_models(n_docs: int = 12, per_doc: int = 4) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(8)
    baseline = rng.uniform(0.2, 0.4, size=n_docs * per_doc)
    teacher = baseline + rng.uniform(0.1, 0.3, size=baseline.size)
    clusters = [f"doc{i // per_doc}" for i in range(baseline.size)]
    return baseline, teacher, clusters


def test_gap_closed_is_0_for_the_baseline_and_1_for_the_teacher() -> None:
    baseline, teacher, clusters = _three_models()
    none = stats.gap_closed(baseline, baseline, teacher, clusters)
    assert (none["ratio"], none["low"], none["high"]) == pytest.approx((0.0, 0.0, 0.0), abs=1e-12)
    full = stats.gap_closed(teacher, baseline, teacher, clusters)
    assert (full["ratio"], full["low"], full["high"]) == pytest.approx((1.0, 1.0, 1.0), abs=1e-12)
    assert (full["n"], full["n_clusters"], full["unstable"]) == (48, 12, False)

    noisy = teacher - np.random.default_rng(9).uniform(0, 0.2, size=teacher.size) * (teacher - baseline)
    part = stats.gap_closed(noisy, baseline, teacher, clusters)
    assert 0.8 < part["low"] < part["ratio"] < part["high"] < 1.0


def test_gap_closed_is_nan_without_a_gap_and_drops_gapless_resamples() -> None:
    baseline, teacher, clusters = _three_models()
    assert math.isnan(stats.gap_closed(teacher, baseline, baseline, clusters)["ratio"])

    # two of three documents have no gap: resamples drawing only those are dropped, not divided by 0
    baseline = np.array([0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    teacher = baseline + np.array([0.2, 0.1, 0.0, 0.0, 0.0, 0.0])
    res = stats.gap_closed(teacher, baseline, teacher, ["d0", "d0", "d1", "d1", "d2", "d2"])
    assert res["ratio"] == pytest.approx(1.0)
    assert (res["low"], res["high"]) == pytest.approx((1.0, 1.0))
    assert res["unstable"] is True


def test_non_inferiority_fails_beyond_the_margin_and_passes_within_it() -> None:
    baseline, _, clusters = _three_models()
    worse = stats.non_inferiority(baseline - 0.3, baseline, clusters, margin=0.05)
    assert worse["passed"] is False
    assert worse["mean_diff"] == pytest.approx(-0.3)
    assert worse["lower_bound"] < -0.05

    noisy = baseline + np.random.default_rng(10).normal(scale=0.01, size=baseline.size)
    same = stats.non_inferiority(noisy, baseline, clusters, margin=0.1)
    assert same["passed"] is True
    assert -0.1 < same["lower_bound"] <= same["mean_diff"]
    assert (same["margin"], same["n"], same["n_clusters"], same["unstable"]) == (0.1, 48, 12, False)


def test_non_inferiority_passes_exactly_when_its_one_sided_bound_clears_the_margin() -> None:
    baseline, teacher, clusters = _three_models()
    for margin in (0.0, 0.01, 0.05):
        res = stats.non_inferiority(teacher, baseline, clusters, margin=margin, seed=5, alpha=0.05)
        test = stats.cluster_sign_flip_test(
            teacher, baseline, clusters, delta=-margin, alternative="greater", seed=5
        )
        assert res["p_value"] == test["p_value"] and res["passed"] is (test["p_value"] <= 0.05)
        assert res["passed"] is (res["lower_bound"] > -margin)


def test_compare_collects_the_pieces() -> None:
    a = [0.5, 0.7, 0.7, 0.2, 0.9, 0.4, 0.6, 0.8]
    b = [0.4, 0.7, 0.5, 0.3, 0.6, 0.4, 0.5, 0.6]
    clusters = ["d1", "d1", "d2", "d2", "d3", "d3", "d4", "d4"]
    row = stats.compare(a, b, clusters, seed=1)
    test = stats.cluster_sign_flip_test(a, b, clusters, seed=1)
    ci = stats.cluster_sign_flip_interval(a, b, clusters, seed=1)
    assert row["p_value"] == test["p_value"] and row["exact"] is True
    assert (row["mean_diff"], row["low"], row["high"]) == (ci["mean_diff"], ci["low"], ci["high"])
    d = np.subtract(a, b)
    assert row["mde"] == stats.min_detectable_difference(d, clusters=clusters)
    assert (row["wins"], row["losses"], row["ties"]) == (5, 1, 2)
    assert (row["n"], row["n_clusters"], row["unstable"]) == (8, 4, True)
    # 4 documents: 16 sign patterns, no two-sided p below 2/16: not testable at 0.05, CI unbounded
    assert row["min_p"] == 2 / 16 and row["testable"] is False
    assert (row["low"], row["high"]) == (-math.inf, math.inf)


def test_few_documents_cannot_reach_alpha_and_say_so() -> None:
    """5 documents (val, test_similar): an exact document-level test cannot go below 2/32 = 0.0625,
    however large and consistent the difference (the per-section test printed 0.0018)."""
    rng = np.random.default_rng(0)
    clusters = np.repeat([f"d{i}" for i in range(5)], 10)
    a = rng.normal(0.5, 0.05, 50)
    b = a - 0.2  # every section 0.2 better
    row = stats.compare(a, b, list(clusters))
    assert row["p_value"] == pytest.approx(0.0625) and row["min_p"] == pytest.approx(0.0625)
    assert row["testable"] is False
    assert stats.paired_permutation_test(a, b)["p_value"] < 0.001  # what the section-level test says
    six = stats.compare(np.append(a, [0.6] * 3), np.append(b, [0.4] * 3), [*clusters, "d5", "d5", "d5"])
    assert six["testable"] is True and six["p_value"] == pytest.approx(2 / 64)
    assert 0 < six["low"] < six["mean_diff"] < six["high"] < math.inf


def test_the_interval_is_the_set_the_test_does_not_reject() -> None:
    baseline, teacher, clusters = _three_models()
    ci = stats.cluster_sign_flip_interval(teacher, baseline, clusters, alpha=0.10, seed=3)
    for bound, outward in ((ci["low"], -1e-6), (ci["high"], 1e-6)):
        inside = stats.cluster_sign_flip_test(teacher, baseline, clusters, delta=bound, seed=3)
        outside = stats.cluster_sign_flip_test(teacher, baseline, clusters, delta=bound + outward, seed=3)
        assert inside["p_value"] > 0.10 >= outside["p_value"]


def test_mde_carries_the_design_effect() -> None:
    rng = np.random.default_rng(1)
    clusters = np.repeat(np.arange(8), 10)
    shared = rng.normal(0, 1, 8)[clusters]  # strongly correlated within a document
    d = shared + rng.normal(0, 0.3, clusters.size)
    deff = stats.design_effect(d, list(clusters))
    assert deff > 3
    naive = stats.min_detectable_difference(d)
    clustered = stats.min_detectable_difference(d, clusters=list(clusters))
    assert clustered > naive * math.sqrt(deff) * 0.99  # t(G-1) quantiles sit above z's
    independent = rng.normal(0, 1, 80)
    assert stats.design_effect(independent, list(clusters)) < 2


def _null_sets(n_docs: int, reps: int, seed: int, delta: float = 0.0):
    """Clustered data: uneven document sizes (2-14 sections), within-document correlation 0.15."""
    rng = np.random.default_rng(seed)
    for _ in range(reps):
        sizes = rng.integers(2, 15, size=n_docs)
        docs = np.repeat(np.arange(n_docs), sizes)
        d = rng.normal(0, math.sqrt(0.15), n_docs)[docs] + rng.normal(0, math.sqrt(0.85), docs.size) + delta
        yield d, [f"doc{k}" for k in docs]


@pytest.mark.parametrize("n_docs", [6, 15])
def test_simulation_rejection_and_coverage_hold_their_level_on_clustered_null_data(n_docs: int) -> None:
    """1,000 sets with no true difference: p < 0.05 at most 7.5 % of the time, the 95 % CI covers 0
    at least 92.5 % of the time (the per-section test gave 16.7 % and 11 % at 15 documents)."""
    rejected = covered = 0
    reps = 1000
    for i, (d, docs) in enumerate(_null_sets(n_docs, reps, seed=n_docs)):
        row = stats.compare(d, np.zeros_like(d), docs, seed=i, n_resamples=1999)
        rejected += row["p_value"] < 0.05
        covered += row["low"] <= 0.0 <= row["high"]
    assert rejected / reps <= 0.075, rejected
    assert covered / reps >= 0.925, covered


@pytest.mark.parametrize("n_docs", [5, 6, 15])
def test_simulation_non_inferiority_at_the_margin_passes_at_most_its_level(n_docs: int) -> None:
    """True difference exactly at -margin: the gate may pass at most 7.5 % of 1,000 sets (nominal 5 %;
    the bootstrap bound passed about 12 % with 5 documents)."""
    margin, reps = 0.1, 1000
    passed = sum(
        stats.non_inferiority(d, np.zeros_like(d), docs, margin=margin, seed=i, n_samples=1999)["passed"]
        for i, (d, docs) in enumerate(_null_sets(n_docs, reps, seed=100 + n_docs, delta=-margin))
    )
    assert passed / reps <= 0.075, passed


# --- bad inputs -------------------------------------------------------------------------------------

A, B, C = [0.1, 0.2, 0.3], [0.2, 0.2, 0.1], ["x", "x", "y"]

BAD = [
    ("b", lambda: stats.paired_permutation_test(A, B[:2])),
    ("a", lambda: stats.paired_permutation_test([], [])),
    ("b", lambda: stats.paired_permutation_test(A, [0.1, math.nan, 0.2])),
    ("alternative", lambda: stats.paired_permutation_test(A, B, alternative="bigger")),
    ("n_resamples", lambda: stats.paired_permutation_test(A, B, n_resamples=0)),
    ("values", lambda: stats.clustered_bootstrap_mean([], [])),
    ("values", lambda: stats.clustered_bootstrap_mean([0.1, math.inf, 0.3], C)),
    ("clusters", lambda: stats.clustered_bootstrap_mean(A, C[:2])),
    ("alpha", lambda: stats.clustered_bootstrap_mean(A, C, alpha=0)),
    ("alpha", lambda: stats.clustered_bootstrap_mean(A, C, alpha=1.0)),
    ("n_samples", lambda: stats.clustered_bootstrap_mean(A, C, n_samples=0)),
    ("clusters", lambda: stats.clustered_bootstrap_diff(A, B, C + ["z"])),
    ("a", lambda: stats.clustered_bootstrap_diff(["x", 1, 2], B, C)),
    ("power", lambda: stats.min_detectable_difference(A, power=1.0)),
    ("diffs", lambda: stats.min_detectable_difference([0.1, math.nan])),
    ("teacher", lambda: stats.gap_closed(A, B, [0.1, 0.2, math.inf], C)),
    ("baseline", lambda: stats.gap_closed(A, B[:2], A, C)),
    ("margin", lambda: stats.non_inferiority(A, B, C, margin=-0.1)),
    ("old", lambda: stats.non_inferiority(A, [], C, margin=0.1)),
    ("alpha", lambda: stats.compare(A, B, C, alpha=-0.5)),
    ("clusters", lambda: stats.compare(A, B, C[:1])),
]


@pytest.mark.parametrize(("name", "call"), BAD, ids=[f"{i}-{name}" for i, (name, _) in enumerate(BAD)])
def test_bad_inputs_raise_value_error_naming_the_argument(name: str, call) -> None:
    with pytest.raises(ValueError, match=rf"^{name}:"):
        call()


def test_permutation_test_of_a_single_pair_enumerates_its_two_flips() -> None:
    assert stats.paired_permutation_test([0.5], [0.2])["p_value"] == 1.0
    assert stats.paired_permutation_test([0.5], [0.2], alternative="greater")["p_value"] == 0.5
    assert stats.paired_permutation_test([0.5], [0.2], alternative="less")["p_value"] == 1.0


def test_report_says_not_testable_instead_of_a_p_value_and_labels_follow_alpha() -> None:
    from types import SimpleNamespace

    from summ_assets.core import report as R

    ev = SimpleNamespace(permutation_resamples=999, bootstrap_samples=200, seed=0, gate_alpha=0.10)
    rows = []
    for set_name, n_docs in (("val", 3), ("test_new", 12)):
        for d in range(n_docs):
            for k in range(4):
                sid = f"{set_name}-{d}-{k}"
                for model, score in (("teacher", 0.5), ("student", 0.31), ("baseline", 0.3)):
                    rows.append(
                        {"set": set_name, "model": model, "section_id": sid, "doc_id": f"d{d}",
                         "rougeLsum_f": score + 0.01 * ((d * 7 + k) % 5)}
                    )  # fmt: skip
    comp = R.comparisons(rows, SimpleNamespace(eval=ev))
    small, large = comp["val"]["teacher vs baseline"], comp["test_new"]["teacher vs baseline"]
    assert small["testable"] is False and small["min_p"] == 0.25
    assert "3 documents cannot reach alpha 0.1" in comp["val"]["gap_closed"]["not_reported"]
    assert large["testable"] is True and large["p_value"] < 0.01 and "ratio" in comp["test_new"]["gap_closed"]
    ci, p = R._comparison_cells(small)
    assert (ci, p) == ("unbounded", "not testable: 3 documents, no p below 0.2500")
    assert R.level_of({"alpha": 0.10}) == "90%" and R.level_of({}) == "95%"
