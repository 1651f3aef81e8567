"""Score distributions behind the alignment thresholds of summ_assets.core.alignment (MATCH_MIN, weights).

Usage:
    .venv/bin/python benchmarks/tune_compare.py [--seed 0] [--n 400]
    .venv/bin/python benchmarks/tune_compare.py --against [--seed 0] [--n 400]

`--against` prints the score distributions behind `core.section_index` (DUPLICATE_MIN, OVERLAP_MIN),
from data/raw only: each pool section queried against the index of data/raw without its own document
(what a genuinely new section scores), and edited copies of it against the whole index (one sentence
dropped or replaced: a duplicate; half or all but one of its sentences replaced: overlapping).

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


def _pct(xs: list[float], q: float) -> float:
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def against(seed: int, n: int) -> None:
    from summ_assets.core import section_index as si

    rng = random.Random(seed)
    docs = [(f"raw/{p.name}", p.read_text(encoding="utf-8")) for p in sorted(RAW.glob("*.md"))]
    index, _ = si.SectionIndex.from_texts(docs)
    queries = []  # (doc_id, title, sentences) of sections with >= 3 sentences
    for doc_id, text in docs:
        for u in al.split_units(text, source=doc_id)[0]:
            sents = split_sentences(u.clean)
            if len(sents) >= 3 and "```" not in u.clean:
                queries.append((doc_id, u.title, sents))
    filler = [s for _, _, ss in queries for s in ss]
    rng.shuffle(queries)
    queries = queries[:n]
    kinds: dict[str, list[float]] = {}

    def best(title: str, sents: list[str], exclude: str | None = None) -> float:
        ms = index.query([unit(title, sents)], 1, exclude_doc=exclude)[0]
        return ms[0].score if ms else 0.0

    for doc_id, title, sents in queries:
        kinds.setdefault("new (own document left out)", []).append(best(title, sents, doc_id))
        kinds.setdefault("duplicate: verbatim", []).append(best(title, sents))
        drop = rng.randrange(len(sents))
        kinds.setdefault("duplicate: 1 sentence dropped", []).append(
            best(title, [s for i, s in enumerate(sents) if i != drop])
        )
        one = list(sents)
        one[rng.randrange(len(sents))] = rng.choice(filler)
        kinds.setdefault("1 sentence replaced", []).append(best(title, one))
        half = list(sents)
        for pos in rng.sample(range(len(sents)), len(sents) // 2):
            half[pos] = rng.choice(filler)
        kinds.setdefault("overlapping: half replaced", []).append(best(title, half))
        keep = rng.randrange(len(sents))
        kinds.setdefault("all but one replaced", []).append(
            best(title, [s if i == keep else rng.choice(filler) for i, s in enumerate(sents)])
        )
    print(
        f"{len(index)} indexed sections of {len(index.documents)} documents; {len(queries)} queries; "
        f"DUPLICATE_MIN={si.DUPLICATE_MIN} OVERLAP_MIN={si.OVERLAP_MIN}"
    )
    print(f"{'kind':32s} {'score min/p5/p50/p95/max':>36s}   dup / overlap / new")
    for kind, vals in kinds.items():
        sc = sorted(vals)
        shares = [sum(si.status_of(v) == st for v in sc) / len(sc) for st in si.STATUSES]
        print(
            f"{kind:32s} {sc[0]:6.2f} {_pct(sc, 0.05):6.2f} {_pct(sc, 0.5):6.2f} {_pct(sc, 0.95):6.2f} "
            f"{sc[-1]:6.2f}   " + " / ".join(f"{x:5.1%}" for x in shares)
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--against", action="store_true", help="the thresholds of core.section_index")
    args = ap.parse_args()
    if args.against:
        against(args.seed, args.n)
        return
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

        ok = sum(s >= al.MATCH_MIN for s in sc) / len(sc)
        print(
            f"{kind:26s} {sc[0]:6.2f} {_pct(sc, 0.05):6.2f} {_pct(sc, 0.5):6.2f} {_pct(sc, 0.95):6.2f} {sc[-1]:6.2f}"
            f"      {_pct(co, 0.05):6.2f} {_pct(co, 0.5):6.2f} {_pct(co, 0.95):6.2f}  {ok:6.1%}"
        )


if __name__ == "__main__":
    main()
