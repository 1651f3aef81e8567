"""Honest statistics for the evaluation report: two models scored on the same examples.

Examples cluster by document (sections of one document are not independent), so intervals resample
documents, not examples. All functions take plain sequences and return plain Python numbers.

- `cluster_sign_flip_test`: the paired test at the document level: per-document sums of the differences
  get random signs (all 2**G sign patterns when few documents). Valid when each document's difference
  is symmetric about the null value, however the sections inside a document correlate (Canay, Romano &
  Shaikh 2017, "Randomization tests under an approximate symmetry assumption", Econometrica 85(3);
  the Rademacher wild cluster bootstrap of Cameron, Gelbach & Miller 2008 uses the same flips). With G
  documents no two-sided p is below 2 / 2**G: `min_p` says so, and `testable` is False when even that
  cannot reach alpha (5 documents: 0.0625 > 0.05).
- `cluster_sign_flip_interval`: the CI of the paired difference by inverting that test (every value
  the test does not reject); unbounded when the set is not testable.
- `paired_permutation_test`: sign flips per example: valid only for independent examples.
- `clustered_bootstrap_mean`: percentile CI of a mean, resampling clusters (documents).
- `clustered_bootstrap_diff`: the same for the paired difference a - b.
- `min_detectable_difference`: the smallest true difference this n can detect (normal approximation);
  with `clusters`, the cluster-robust standard error (design effect included) and t with G - 1 df.
- `gap_closed`: share of the teacher-baseline gap the student closes, with a clustered CI.
- `non_inferiority`: is `new` no worse than `old` by more than a margin (the one-sided document-level
  sign-flip test at the margin)?
- `compare`: everything a report row needs for "a vs b" on one set, at the document level.

Every interval carries `unstable`: fewer than `MIN_STABLE_CLUSTERS` documents, too few to trust it.
The simulation tests (`test_stats.py`) check the error rates on clustered null data (6 and 15 documents
of uneven sizes, within-document correlation 0.15, 1,000 sets): rejection at most 7.5 % at alpha 0.05,
CI coverage at least 92.5 %, and likewise for the non-inferiority gate at its margin.
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


# --- document-level sign flips ----------------------------------------------------------------------


class _SignFlips:
    """Per-cluster totals of paired differences and the sign patterns to flip them with: all 2**G when
    ``2**G <= n_resamples`` (exact), else `n_resamples` random patterns plus the identity."""

    def __init__(self, diffs: np.ndarray, clusters: Sequence[Hashable], n_resamples: int, seed: int) -> None:
        _check_count(n_resamples, "n_resamples")
        inv, self.k = _cluster_codes(clusters)
        self.n = diffs.size
        self.center = float(diffs.mean())
        # the first bracketing step of `bound`: the spread of the differences
        self.scale = float(np.ptp(diffs)) if diffs.size > 1 else abs(self.center)
        self.totals = np.bincount(inv, weights=diffs, minlength=self.k)
        self.sizes = np.bincount(inv, minlength=self.k).astype(float)
        self.exact = 2**self.k <= n_resamples
        if self.exact:
            codes = np.arange(2**self.k)[:, None] >> np.arange(self.k)[None, :]
            flips = 1.0 - 2.0 * (codes & 1)
        else:
            rng = np.random.default_rng(seed)
            flips = np.vstack([np.ones(self.k), rng.choice([-1.0, 1.0], size=(n_resamples, self.k))])
        self.a = flips @ self.totals  # flipped sums of the totals
        self.b = flips @ self.sizes  # ... and of the cluster sizes (for shifted null values)
        self.m = flips.shape[0]

    def p_value(self, delta: float, alternative: str) -> float:
        """p of H0: mean difference = `delta` (the per-cluster totals of d - delta are flipped)."""
        flipped = self.a - delta * self.b
        observed = self.totals.sum() - delta * self.n
        tol = 1e-9 * max(1.0, float(np.abs(self.totals).sum()) + abs(delta) * self.n)
        if alternative == "two-sided":
            hits = np.abs(flipped) >= abs(observed) - tol
        elif alternative == "greater":
            hits = flipped >= observed - tol
        else:
            hits = flipped <= observed + tol
        return float(hits.sum() / self.m)

    def min_p(self, alternative: str) -> float:
        """The smallest p any data can give here (the identity pattern, and its mirror two-sided)."""
        if not self.exact:
            return 1.0 / self.m
        return (2.0 if alternative == "two-sided" else 1.0) / self.m

    def bound(self, side: str, alpha: float, alternative: str) -> float:
        """The outermost null value on `side` ("low"/"high") the test at `alpha` does not reject (test
        inversion): bracket by doubling, then bisect. ±inf when nothing can be rejected."""
        sign = -1.0 if side == "low" else 1.0
        if self.min_p(alternative) > alpha:
            return sign * math.inf
        center = self.center
        step = max(self.scale, 1e-12)
        far = center + sign * step
        for _ in range(200):
            if self.p_value(far, alternative) <= alpha:
                break
            step *= 2.0
            far = center + sign * step
        else:
            return sign * math.inf
        inside, outside = center, far
        for _ in range(60):
            mid = (inside + outside) / 2
            if self.p_value(mid, alternative) > alpha:
                inside = mid
            else:
                outside = mid
            if abs(outside - inside) <= 1e-10 * max(1.0, abs(center)):
                break
        return float(inside)


def _flips(
    a: Sequence[float],
    b: Sequence[float],
    clusters: Sequence[Hashable],
    n_resamples: int,
    seed: int,
    names: tuple[str, str] = ("a", "b"),
) -> tuple[np.ndarray, _SignFlips]:
    x, y = _values(a, names[0]), _values(b, names[1])
    _same_length(**{names[0]: x, names[1]: y, "clusters": clusters})
    return x - y, _SignFlips(x - y, clusters, n_resamples, seed)


# --- public API -------------------------------------------------------------------------------------


def cluster_sign_flip_test(
    a: Sequence[float],
    b: Sequence[float],
    clusters: Sequence[Hashable],
    *,
    delta: float = 0.0,
    alternative: str = "two-sided",
    n_resamples: int = 9999,
    seed: int = 0,
) -> dict[str, float | int | bool]:
    """Document-level test of H0: mean(a - b) = `delta` (module doc). `alternative`: "two-sided",
    "greater" (a - b > delta) or "less". Returns {"mean_diff", "p_value", "exact", "min_p", "n",
    "n_clusters"}; `min_p` is the smallest p this many documents can give."""
    if alternative not in _ALTERNATIVES:
        raise ValueError(f"alternative: must be one of {_ALTERNATIVES}, got {alternative!r}")
    d, f = _flips(a, b, clusters, n_resamples, seed)
    return {
        "mean_diff": float(d.mean()),
        "p_value": f.p_value(delta, alternative),
        "exact": f.exact,
        "min_p": f.min_p(alternative),
        "n": int(d.size),
        "n_clusters": f.k,
    }


def cluster_sign_flip_interval(
    a: Sequence[float],
    b: Sequence[float],
    clusters: Sequence[Hashable],
    *,
    alpha: float = 0.05,
    n_resamples: int = 9999,
    seed: int = 0,
) -> dict[str, float | int | bool]:
    """(1 - alpha) CI of mean(a - b): every null value the two-sided document-level sign-flip test does
    not reject at `alpha`. Unbounded (±inf) when no test on this many documents can reach alpha.
    Returns {"mean_diff", "low", "high", "n", "n_clusters", "unstable"}."""
    _check_alpha(alpha)
    d, f = _flips(a, b, clusters, n_resamples, seed)
    low, high = f.bound("low", alpha, "two-sided"), f.bound("high", alpha, "two-sided")
    return {"mean_diff": f.center, "low": low, "high": high, **_cluster_info(int(d.size), f.k)}


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


def min_detectable_difference(
    diffs: Sequence[float],
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    clusters: Sequence[Hashable] | None = None,
) -> float:
    """Smallest true mean difference a two-sided paired test at `alpha` detects with probability `power`
    at this n (normal approximation): (z_{1-alpha/2} + z_{power}) * sd(diffs, ddof=1) / sqrt(n).
    With `clusters`: (t_{G-1}(1-alpha/2) + t_{G-1}(power)) * the cluster-robust standard error (CR1;
    Cameron & Miller 2015, "A practitioner's guide to cluster-robust inference"), which carries the
    design effect (`design_effect`). nan when n < 2 (or fewer than 2 clusters)."""
    from scipy import stats

    _check_alpha(alpha)
    _check_alpha(power, "power")
    d = _values(diffs, "diffs", allow_empty=True)
    if d.size < 2:
        return math.nan
    if clusters is None:
        z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
        return float(z * d.std(ddof=1) / math.sqrt(d.size))
    _same_length(diffs=d, clusters=clusters)
    se, k = _cluster_robust_se(d, clusters)
    if k < 2:
        return math.nan
    t = stats.t.ppf(1 - alpha / 2, k - 1) + stats.t.ppf(power, k - 1)
    return float(t * se)


def _cluster_robust_se(d: np.ndarray, clusters: Sequence[Hashable]) -> tuple[float, int]:
    """CR1 standard error of mean(d) with examples clustered, and the cluster count."""
    inv, k = _cluster_codes(clusters)
    if k < 2:
        return math.nan, k
    resid = np.bincount(inv, weights=d - d.mean(), minlength=k)
    return float(math.sqrt(k / (k - 1) * np.sum(resid**2)) / d.size), k


def design_effect(diffs: Sequence[float], clusters: Sequence[Hashable]) -> float:
    """Variance of mean(diffs) with clustering (CR1) over the variance if examples were independent:
    how many times fewer effective examples the set holds. nan when it cannot be computed."""
    d = _values(diffs, "diffs", allow_empty=True)
    if d.size < 2 or d.std(ddof=1) == 0:
        return math.nan
    _same_length(diffs=d, clusters=clusters)
    se, k = _cluster_robust_se(d, clusters)
    return float((se / (d.std(ddof=1) / math.sqrt(d.size))) ** 2) if k >= 2 else math.nan


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
    n_samples: int = 9999,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, float | int | bool]:
    """Non-inferiority of `new` against `old` on the same examples (higher scores are better): passes
    when the one-sided document-level sign-flip test rejects H0: mean(new - old) = -margin in favour of
    "greater" at `alpha` (`n_samples`: the random sign patterns when there are too many documents to
    enumerate). `lower_bound` is the matching one-sided (1 - alpha) bound (-inf when untestable).
    Returns {"mean_diff", "lower_bound", "margin", "p_value", "min_p", "passed", "n", "n_clusters",
    "unstable"}."""
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin: must be a finite number >= 0, got {margin!r}")
    _check_alpha(alpha)
    d, f = _flips(new, old, clusters, n_samples, seed, names=("new", "old"))
    p = f.p_value(-float(margin), "greater")
    return {
        "mean_diff": f.center,
        "lower_bound": f.bound("low", alpha, "greater"),
        "margin": float(margin),
        "p_value": p,
        "min_p": f.min_p("greater"),
        "passed": p <= alpha,
        **_cluster_info(int(d.size), f.k),
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
    """Everything a report row needs for "a vs b" on one set, at the document level: mean_diff, the
    two-sided document-level sign-flip p_value (`exact`: all sign patterns), the CI low/high at
    1 - alpha by inverting that test, `min_p` (the smallest p this many documents allow) and `testable`
    (min_p <= alpha; when False the p-value cannot show anything and the CI is unbounded), the MDE with
    the design effect (`design_effect`), n, n_clusters, unstable, and per-example wins (a > b), losses
    (a < b) and ties. `n_samples` is kept for callers; the clustered bootstrap is no longer used here."""
    _check_alpha(alpha)
    x, y = _values(a, "a"), _values(b, "b")
    _same_length(a=x, b=y, clusters=clusters)
    test = cluster_sign_flip_test(x, y, clusters, n_resamples=n_resamples, seed=seed)
    ci = cluster_sign_flip_interval(x, y, clusters, alpha=alpha, n_resamples=n_resamples, seed=seed)
    return {
        "mean_diff": ci["mean_diff"],
        "p_value": test["p_value"],
        "exact": test["exact"],
        "min_p": test["min_p"],
        "testable": test["min_p"] <= alpha,
        "alpha": alpha,
        "method": "document-level sign flips (CI: test inversion)",
        "low": ci["low"],
        "high": ci["high"],
        "mde": min_detectable_difference(x - y, alpha=alpha, power=power, clusters=clusters),
        "design_effect": design_effect(x - y, clusters),
        "n": ci["n"],
        "n_clusters": ci["n_clusters"],
        "unstable": ci["unstable"],
        "wins": int(np.sum(x > y)),
        "losses": int(np.sum(x < y)),
        "ties": int(np.sum(x == y)),
    }
