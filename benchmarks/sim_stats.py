"""Error rates of the report's statistics on simulated clustered data (no model, seconds).

Usage:
    .venv/bin/python benchmarks/sim_stats.py [--sets 1000] [--seed 0]

Each set: G documents of uneven sizes (2-14 sections), a per-document effect (within-document
correlation 0.15) plus per-section noise. Printed per G, side by side in one run:
- no true difference: how often p < 0.05 and how often the 95 % CI misses 0, for the document-level
  `core.stats.compare` and for the per-section permutation test with the clustered bootstrap CI it
  replaced;
- true difference exactly at the non-inferiority margin: how often the gate passes (nominal 5 %), for
  `core.stats.non_inferiority` and for the old clustered-bootstrap bound.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from summ_assets.core import stats


def sets(n_docs: int, reps: int, rng: np.random.Generator, delta: float = 0.0):
    for _ in range(reps):
        sizes = rng.integers(2, 15, size=n_docs)
        docs = np.repeat(np.arange(n_docs), sizes)
        d = rng.normal(0, math.sqrt(0.15), n_docs)[docs] + rng.normal(0, math.sqrt(0.85), docs.size) + delta
        yield d, [f"doc{k}" for k in docs]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    margin = 0.1
    print(f"{args.sets} sets per row; within-document correlation 0.15; 2-14 sections per document")
    for g in (5, 6, 15):
        rej = miss = old_rej = old_miss = 0
        for i, (d, docs) in enumerate(sets(g, args.sets, rng)):
            zero = np.zeros_like(d)
            row = stats.compare(d, zero, docs, seed=i, n_resamples=1999)
            rej += row["p_value"] < 0.05
            miss += not (row["low"] <= 0 <= row["high"])
            old_rej += stats.paired_permutation_test(d, zero, seed=i, n_resamples=1999)["p_value"] < 0.05
            ci = stats.clustered_bootstrap_diff(d, zero, docs, seed=i, n_samples=1000)
            old_miss += not (ci["low"] <= 0 <= ci["high"])
        ni = old_ni = 0
        for i, (d, docs) in enumerate(sets(g, args.sets, rng, delta=-margin)):
            zero = np.zeros_like(d)
            ni += stats.non_inferiority(d, zero, docs, margin=margin, seed=i, n_samples=1999)["passed"]
            boot = stats.clustered_bootstrap_mean(d, docs, seed=i, n_samples=1000, alpha=0.10)
            old_ni += boot["low"] > -margin
        n = args.sets
        print(
            f"G={g:2d} documents | p<0.05 under the null: documents {rej / n:6.1%}  sections {old_rej / n:6.1%} | "
            f"95% CI misses 0: documents {miss / n:6.1%}  bootstrap {old_miss / n:6.1%} | "
            f"non-inferiority passes at the margin: documents {ni / n:6.1%}  bootstrap {old_ni / n:6.1%}"
        )


if __name__ == "__main__":
    main()
