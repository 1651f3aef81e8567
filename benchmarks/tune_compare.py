"""Score distributions behind the alignment thresholds of summ_assets.core.alignment (MATCH_MIN, weights).

Usage:
    .venv/bin/python benchmarks/tune_compare.py [--seed 0] [--n 400]

Crafted pairs from the training pool only (data/raw sections; data/eval is never read):
- same section, k sentence edits (a sentence replaced by one of another document), k = 1 .. half its
  sentences, with the title kept or renamed (another section's title);
- a section whose body was mostly rewritten (all but one sentence replaced) under the same heading;
- two different sections (random pairs), with their own titles and under one shared title.
Every pair is scored at the same relative position (the position term at its maximum, the worst case
for different sections). Prints percentiles of the score and of its content part per kind, and how many
of each kind MATCH_MIN accepts.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from summ_assets.core import alignment as al
from summ_assets.core.chunking import split_markdown
from summ_assets.core.metrics import split_sentences

RAW = Path(__file__).resolve().parents[1] / "data" / "raw"


def pool() -> list[tuple[str, list[str]]]:
    """(title, body sentences) of every level-2/3 section of data/raw with at least 3 sentences."""
    out = []
    for p in sorted(RAW.glob("*.md")):
        text = p.read_text(encoding="utf-8")
        units, _ = al.split_units(text, source=p.name)
        for u in units:
            if u.level < 2 or "```" in u.clean:
                continue
            sents = split_sentences(u.clean)
            if len(sents) >= 3:
                out.append((u.title, sents))
    return out


def unit(title: str, sents: list[str]) -> al.Unit:
    text = f"## {title}\n\n" + " ".join(sents) + "\n"
    doc = split_markdown(text, al.CharCounter(), max_tokens=len(text) + 1)
    return al.units_of(text, doc.sections)[0]


def score(a: al.Unit, b: al.Unit) -> tuple[float, float]:
    s = float(al.score_matrix([a], [b], 1, 1)[0, 0])
    wa, wb = al._word_strings([a], [b])
    content = float(al._similarity(wa, wb, 1)[0, 0])
    return s, content


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=400)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    secs = pool()
    filler = [s for _, ss in secs for s in ss]
    kinds: dict[str, list[tuple[float, float]]] = {}
    for _ in range(args.n):
        i, j = rng.sample(range(len(secs)), 2)
        title, sents = secs[i]
        other_title, other = secs[j]
        k = rng.randint(1, max(1, len(sents) // 2))
        edited = list(sents)
        for pos in rng.sample(range(len(sents)), k):
            edited[pos] = rng.choice(filler)
        base = unit(title, sents)
        kinds.setdefault("edited <= half", []).append(score(base, unit(title, edited)))
        kinds.setdefault("edited <= half + renamed", []).append(score(base, unit(other_title, edited)))
        kinds.setdefault("renamed, unedited", []).append(score(base, unit(other_title, sents)))
        keep = rng.randrange(len(sents))
        rewritten = [s if n == keep else rng.choice(filler) for n, s in enumerate(sents)]
        kinds.setdefault("rewritten, same heading", []).append(score(base, unit(title, rewritten)))
        kinds.setdefault("different sections", []).append(score(base, unit(other_title, other)))
        kinds.setdefault("different, same title", []).append(score(base, unit(title, other)))
    print(f"{len(secs)} pool sections; MATCH_MIN={al.MATCH_MIN}")
    print(f"{'kind':26s} {'score min/p5/p50/p95/max':>34s} {'content p5/p50/p95':>22s}  matched")
    for kind, vals in kinds.items():
        sc = sorted(v[0] for v in vals)
        co = sorted(v[1] for v in vals)

        def pct(xs: list[float], q: float) -> float:
            return xs[min(len(xs) - 1, int(q * len(xs)))]

        ok = sum(s >= al.MATCH_MIN for s in sc) / len(sc)
        print(
            f"{kind:26s} {sc[0]:6.2f} {pct(sc, 0.05):6.2f} {pct(sc, 0.5):6.2f} {pct(sc, 0.95):6.2f} {sc[-1]:6.2f}"
            f"      {pct(co, 0.05):6.2f} {pct(co, 0.5):6.2f} {pct(co, 0.95):6.2f}  {ok:6.1%}"
        )


if __name__ == "__main__":
    main()
