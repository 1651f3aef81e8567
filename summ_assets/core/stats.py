"""Honest statistics for the evaluation report: two models scored on the same examples.

Examples cluster by document (sections of one document are not independent), so intervals resample
documents, not examples. All functions take plain sequences and return plain Python numbers.

- `paired_permutation_test`: sign-flip permutation test of mean(a - b) (scipy; exact when 2**n is small).
- `clustered_bootstrap_mean`: percentile CI of a mean, resampling clusters (documents).
- `clustered_bootstrap_diff`: the same for the paired difference a - b.
- `min_detectable_difference`: the smallest true difference this n can detect (normal approximation).
- `gap_closed`: share of the teacher-baseline gap the student closes, with a clustered CI.
- `non_inferiority`: is `new` no worse than `old` by more than a margin (one-sided clustered bound)?
- `compare`: everything a report row needs for "a vs b" on one set.

Every interval carries `unstable`: fewer than `MIN_STABLE_CLUSTERS` documents, too few to trust it.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

MIN_STABLE_CLUSTERS = 10
# cap on the elements scipy materialises per permutation batch (the result does not depend on it)
_PERMUTATION_BATCH_ELEMENTS = 2_000_000
_ALTERNATIVES = ("two-sided", "greater", "less")


# --- validation -------------------------------------------------------------------------------------


def _values(x: Sequence[float], name: str, *, allow_empty: bool = False) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: not a sequence of numbers ({exc})") from None
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence, got shape {arr.shape}")
    if arr.size == 0 and not allow_empty:
        raise ValueError(f"{name}: empty")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains non-finite values (nan or inf)")
    return arr


def _same_length(**arrays: Sequence[Any]) -> int:
    (first, n), *rest = ((k, len(v)) for k, v in arrays.items())
    for name, m in rest:
        if m != n:
            raise ValueError(f"{name}: length {m} does not match {first} (length {n})")
    return n


def _check_alpha(alpha: float, name: str = "alpha") -> None:
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise ValueError(f"{name}: must be in (0, 1), got {alpha!r}")


def _check_count(n: int, name: str) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{name}: must be an integer >= 1, got {n!r}")


def _cluster_codes(clusters: Sequence[Hashable]) -> tuple[np.ndarray, int]:
    """Integer code per example (clusters numbered in order of first appearance) and the cluster count."""
    if len(clusters) == 0:
        raise ValueError("clusters: empty")
    codes: dict[Hashable, int] = {}
    try:
        inv = np.fromiter((codes.setdefault(c, len(codes)) for c in clusters), dtype=np.intp)
    except TypeError as exc:
        raise ValueError(f"clusters: ids must be hashable ({exc})") from None
    return inv, len(codes)


# --- clustered bootstrap core -----------------------------------------------------------------------


class _ClusterDraws:
    """`n_samples` resamples of the clusters with replacement, as an index matrix (n_samples x k)."""

    def __init__(self, clusters: Sequence[Hashable], n_samples: int, seed: int) -> None:
        _check_count(n_samples, "n_samples")
        self.inv, self.k = _cluster_codes(clusters)
        self.idx = np.random.default_rng(seed).integers(0, self.k, size=(n_samples, self.k))
        self.counts = self.sums(np.ones(len(self.inv)))

    def sums(self, values: np.ndarray) -> np.ndarray:
        """Per resample: the sum of `values` over every example of the drawn clusters."""
        per_cluster = np.bincount(self.inv, weights=values, minlength=self.k)
        return per_cluster[self.idx].sum(axis=1)

    def means(self, values: np.ndarray) -> np.ndarray:
        """Per resample: the mean of `values` over every example of the drawn clusters."""
        return self.sums(values) / self.counts


def _percentile_ci(stats: np.ndarray, alpha: float) -> tuple[float, float]:
    if stats.size == 0:
        return math.nan, math.nan
    low, high = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def _cluster_info(n: int, k: int) -> dict[str, int | bool]:
    return {"n": n, "n_clusters": k, "unstable": k < MIN_STABLE_CLUSTERS}


# --- public API -------------------------------------------------------------------------------------


def paired_permutation_test(
    a: Sequence[float],
    b: Sequence[float],
    *,
    n_resamples: int = 9999,
    seed: int = 0,
    alternative: str = "two-sided",
) -> dict[str, float | int | bool]:
    """Paired sign-flip permutation test of mean(a - b) (`scipy.stats.permutation_test`,
    ``permutation_type="samples"``). Exact (all 2**n flips) when ``2**n <= n_resamples``, otherwise
    `n_resamples` random flips seeded by `seed`. `alternative`: "two-sided", "greater" (a > b) or
    "less" (a < b). Returns {"mean_diff", "p_value", "n", "exact"}."""
    from scipy import stats

    if alternative not in _ALTERNATIVES:
        raise ValueError(f"alternative: must be one of {_ALTERNATIVES}, got {alternative!r}")
    _check_count(n_resamples, "n_resamples")
    x, y = _values(a, "a"), _values(b, "b")
    n = _same_length(a=x, b=y)
    if n == 1:  # scipy needs two observations; the two flips of one difference give p = 1 two-sided
        d = float(x[0] - y[0])
        p = (
            1.0
            if alternative == "two-sided" or d == 0
            else (0.5 if (d > 0) == (alternative == "greater") else 1.0)
        )
        return {"mean_diff": d, "p_value": p, "n": 1, "exact": True}

    def mean_diff(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
        return np.mean(x - y, axis=axis)

    res = stats.permutation_test(
        (x, y),
        statistic=mean_diff,
        permutation_type="samples",
        vectorized=True,
        n_resamples=n_resamples,
        batch=max(1, _PERMUTATION_BATCH_ELEMENTS // (2 * n)),
        alternative=alternative,
        rng=seed,
    )
    return {
        "mean_diff": float(res.statistic),
        "p_value": float(res.pvalue),
        "n": n,
        "exact": 2**n <= n_resamples,
    }


def clustered_bootstrap_mean(
    values: Sequence[float],
    clusters: Sequence[Hashable],
    *,
    n_samples: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, float | int | bool]:
    """Percentile (1 - alpha) CI of the mean of `values` when examples cluster (by document): resample
    clusters with replacement; each resample's statistic is the mean over all examples of the drawn
    clusters. Returns {"mean", "low", "high", "n", "n_clusters", "unstable"}."""
    _check_alpha(alpha)
    v = _values(values, "values")
    n = _same_length(values=v, clusters=clusters)
    draws = _ClusterDraws(clusters, n_samples, seed)
    low, high = _percentile_ci(draws.means(v), alpha)
    return {"mean": float(v.mean()), "low": low, "high": high, **_cluster_info(n, draws.k)}


def clustered_bootstrap_diff(
    a: Sequence[float],
    b: Sequence[float],
    clusters: Sequence[Hashable],
    *,
    n_samples: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, float | int | bool]:
    """`clustered_bootstrap_mean` of the paired difference a - b.
    Returns {"mean_diff", "low", "high", "n", "n_clusters", "unstable"}."""
    x, y = _values(a, "a"), _values(b, "b")
    _same_length(a=x, b=y, clusters=clusters)
    res = clustered_bootstrap_mean(x - y, clusters, n_samples=n_samples, seed=seed, alpha=alpha)
    return {"mean_diff": res.pop("mean"), **res}


def min_detectable_difference(diffs: Sequence[float], *, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest true mean difference a two-sided paired test at `alpha` detects with probability `power`
    at this n (normal approximation): (z_{1-alpha/2} + z_{power}) * sd(diffs, ddof=1) / sqrt(n).
    nan when n < 2."""
    from scipy import stats

    _check_alpha(alpha)
    _check_alpha(power, "power")
    d = _values(diffs, "diffs", allow_empty=True)
    if d.size < 2:
        return math.nan
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return float(z * d.std(ddof=1) / math.sqrt(d.size))


def gap_closed(
    student: Sequence[float],
    baseline: Sequence[float],
    teacher: Sequence[float],
    clusters: Sequence[Hashable],
    *,
    n_samples: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, float | int | bool]:
    """Share of the teacher-baseline gap closed by distillation,
    (mean(student) - mean(baseline)) / (mean(teacher) - mean(baseline)), with a clustered-bootstrap
    percentile CI (the same cluster draws for numerator and denominator; resamples whose gap is 0, up to
    float cancellation, are dropped). Returns {"ratio", "low", "high", "n", "n_clusters", "unstable"};
    ratio is nan when the gap is 0."""
    _check_alpha(alpha)
    s, base, t = _values(student, "student"), _values(baseline, "baseline"), _values(teacher, "teacher")
    n = _same_length(student=s, baseline=base, teacher=t, clusters=clusters)
    num, den = s - base, t - base

    def usable(den_sum: np.ndarray, abs_sum: np.ndarray) -> np.ndarray:
        return np.abs(den_sum) > 1e-12 * abs_sum

    ratio = float(num.sum() / den.sum()) if usable(den.sum(), np.abs(den).sum()) else math.nan
    draws = _ClusterDraws(clusters, n_samples, seed)
    num_s, den_s = draws.sums(num), draws.sums(den)  # the drawn counts cancel in the ratio
    keep = usable(den_s, draws.sums(np.abs(den)))
    low, high = _percentile_ci(num_s[keep] / den_s[keep], alpha)
    return {"ratio": ratio, "low": low, "high": high, **_cluster_info(n, draws.k)}


def non_inferiority(
    new: Sequence[float],
    old: Sequence[float],
    clusters: Sequence[Hashable],
    *,
    margin: float,
    n_samples: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, float | int | bool]:
    """Non-inferiority of `new` against `old` on the same examples: passes when the one-sided (1 - alpha)
    clustered-bootstrap lower bound of mean(new - old) is > -margin (higher scores are better).
    Returns {"mean_diff", "lower_bound", "margin", "passed", "n", "n_clusters", "unstable"}."""
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin: must be a finite number >= 0, got {margin!r}")
    _check_alpha(alpha)
    x, y = _values(new, "new"), _values(old, "old")
    n = _same_length(new=x, old=y, clusters=clusters)
    draws = _ClusterDraws(clusters, n_samples, seed)
    lower = float(np.quantile(draws.means(x - y), alpha))
    return {
        "mean_diff": float(np.mean(x - y)),
        "lower_bound": lower,
        "margin": float(margin),
        "passed": lower > -margin,
        **_cluster_info(n, draws.k),
    }


def compare(
    a: Sequence[float],
    b: Sequence[float],
    clusters: Sequence[Hashable],
    *,
    n_resamples: int = 9999,
    n_samples: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    power: float = 0.8,
) -> dict[str, float | int | bool]:
    """Everything a report row needs for "a vs b" on one set: mean_diff, the two-sided permutation
    p_value (and exact), the clustered CI low/high, mde, n, n_clusters, unstable, and per-example
    wins (a > b), losses (a < b) and ties."""
    x, y = _values(a, "a"), _values(b, "b")
    _same_length(a=x, b=y, clusters=clusters)
    perm = paired_permutation_test(x, y, n_resamples=n_resamples, seed=seed)
    ci = clustered_bootstrap_diff(x, y, clusters, n_samples=n_samples, seed=seed, alpha=alpha)
    return {
        "mean_diff": ci["mean_diff"],
        "p_value": perm["p_value"],
        "exact": perm["exact"],
        "low": ci["low"],
        "high": ci["high"],
        "mde": min_detectable_difference(x - y, alpha=alpha, power=power),
        "n": ci["n"],
        "n_clusters": ci["n_clusters"],
        "unstable": ci["unstable"],
        "wins": int(np.sum(x > y)),
        "losses": int(np.sum(x < y)),
        "ties": int(np.sum(x == y)),
    }
