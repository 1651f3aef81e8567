"""Alignment time of summ_assets.core.alignment for 10 / 100 / 1,000 sections a side.

Usage:
    .venv/bin/python benchmarks/bench_compare.py [--sizes 10,100,1000] [--repeat 3] [--seed 0] [--workers 1]

Documents are built from the training pool's sections (data/raw, level 2-3, each given a unique last
sentence so no two bodies are equal). NEW is OLD with 5 % of the sections edited (one sentence
replaced), 2 % deleted, 2 % inserted, 1 % renamed and 1 % moved ("typical"), and, as the worst case, with
every section edited ("all edited": nothing pairs by exact body, the whole N x N score matrix and the
assignment run). Timed apart, per size:
- split: `split_markdown` of both versions (a character counter: the units do not depend on it);
- units: merging parts, the cleaner and normalisation of every unit (`units_of`);
- align: `align_units` alone, given the units (the figure the 2 s target is about), median of --repeat;
- kiwi: its load (once per process), then Kiwi sentence splitting of every section of both versions (the change lines use it, only on
  edited pairs), and the change lines of the typical case's edited pairs.
Then:
- end to end (`--model DIR`, default the promoted student; skipped with a line when there is none):
  two versions of a 100-section document with exactly 5 sections edited, `compare_documents` with the
  model and an empty summary cache (the sections summarized and the time), then the same pair again
  (all from the cache);
- against a corpus: a 2,000-section index built from the pool (Kiwi tokenization timed apart), and the
  query time for one new 20-section page (the first query fits TF-IDF; the next ones reuse it).
Prints one line per figure: ``<name>: <value> <unit>``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from summ_assets.core import alignment as al
from summ_assets.core.chunking import CharCounter, split_markdown

RAW = Path(__file__).resolve().parents[1] / "data" / "raw"


def pool() -> list[tuple[str, str]]:
    out = []
    for p in sorted(RAW.glob("*.md")):
        text = p.read_text(encoding="utf-8")
        for u in al.split_units(text, source=p.name)[0]:
            if u.level >= 2 and u.key:
                out.append((u.title, text[u.char_start : u.char_end].split("\n", 1)[1].strip()))
    return out


def build(n: int, rng: random.Random, secs: list[tuple[str, str]], all_edited: bool) -> tuple[str, str]:
    order = [rng.randrange(len(secs)) for _ in range(n)]
    old = [(f"{secs[k][0]} {i}", f"{secs[k][1]}\n\n항목 {i}의 고유 문장이다.") for i, k in enumerate(order)]
    new = list(old)
    if all_edited:
        new = [(t, b + f" 개정 {i}판에서 한 문장을 더했다.") for i, (t, b) in enumerate(new)]
    else:
        for i in rng.sample(range(n), max(1, n * 5 // 100)):
            t, b = new[i]
            new[i] = (t, b.replace("다.", "다고 한다.", 1) + " 수정된 문장이다.")
        for i in rng.sample(range(n), max(1, n // 100)):
            new[i] = (new[i][0] + " (개정)", new[i][1])
        for i in sorted(rng.sample(range(n), max(1, n * 2 // 100)), reverse=True):
            del new[i]
        for i in range(max(1, n * 2 // 100)):
            t, b = secs[rng.randrange(len(secs))]
            new.insert(rng.randrange(len(new) + 1), (f"새 절 {i} {t}", b + f"\n\n새 항목 {i}."))
        for _ in range(max(1, n // 100)):
            new.insert(rng.randrange(len(new) + 1), new.pop(rng.randrange(len(new))))

    def doc(items: list[tuple[str, str]]) -> str:
        return "# 문서\n\n" + "".join(f"## {t}\n\n{b}\n\n" for t, b in items)

    return doc(old), doc(new)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10,100,1000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1, help="rapidfuzz cdist threads (-1: all cores)")
    ap.add_argument("--model", help="model folder for the end-to-end figure (default: the promoted student)")
    ap.add_argument("--skip-alignment", action="store_true", help="only the end-to-end and corpus figures")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    secs = pool()
    print(f"pool: {len(secs)} sections of data/raw")
    # warm-up: imports (scipy, rapidfuzz, markdown-it) are not part of any figure
    o, n = build(10, rng, secs, False)
    al.align_documents(o, n)
    from summ_assets.core.metrics import get_kiwi, split_sentences

    t0 = time.perf_counter()
    get_kiwi()
    split_sentences("첫 분석은 모델을 읽는다. 시간에서 뺀다.")
    print(f"kiwi load + first analysis: {time.perf_counter() - t0:.3f} s (once per process)")
    for size in [] if args.skip_alignment else [int(s) for s in args.sizes.split(",")]:
        for case in ("typical", "all edited"):
            old, new = build(size, rng, secs, case == "all edited")
            t0 = time.perf_counter()
            counter = CharCounter()
            od = split_markdown(old, counter, max_tokens=len(old) + 1)
            nd = split_markdown(new, counter, max_tokens=len(new) + 1)
            t_split = time.perf_counter() - t0
            t0 = time.perf_counter()
            ou, nu = al.units_of(old, od.sections), al.units_of(new, nd.sections)
            t_units = time.perf_counter() - t0
            times = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                res = al.align_units(ou, nu, workers=args.workers)
                times.append(time.perf_counter() - t0)
            t_align = statistics.median(times)
            tag = f"{size}x{size} {case}"
            c = res.counts
            print(
                f"{tag} sections: old={len(ou)} new={len(nu)}; unchanged={c['unchanged']} edited={c['edited']} "
                f"added={c['added']} removed={c['removed']} renamed={c['heading_changed']} moved={c['moved']}"
            )
            print(f"{tag} split: {t_split:.3f} s")
            print(f"{tag} units (merge + clean + normalise): {t_units:.3f} s")
            print(f"{tag} align: {t_align:.3f} s (median of {args.repeat})")
            if case == "typical":
                from summ_assets.core.metrics import clear_caches

                clear_caches()
                t0 = time.perf_counter()
                for u in ou + nu:
                    split_sentences(u.clean)
                t_kiwi = time.perf_counter() - t0
                print(f"{tag} kiwi sentences, every section of both versions: {t_kiwi:.3f} s")
                from summ_assets.serving.compare import change_line

                clear_caches()
                t0 = time.perf_counter()
                changed = [p for p in res.pairs if p.status != "unchanged"]
                for p in changed:
                    change_line(p)
                print(
                    f"{tag} change lines ({len(changed)} rows, kiwi included): {time.perf_counter() - t0:.3f} s"
                )

    end_to_end(rng, secs, args.model)
    against_corpus(rng, secs)


def end_to_end(rng: random.Random, secs: list[tuple[str, str]], model: str | None) -> None:
    import tempfile

    from summ_assets.serving import ServingError, Summarizer, resolve_model_path
    from summ_assets.serving.compare import compare_documents

    try:
        path = resolve_model_path(model)
    except ServingError as exc:
        print(f"end to end: skipped ({exc})")
        return
    items = [
        (f"{secs[k][0]} {i}", f"{secs[k][1]}\n\n항목 {i}의 고유 문장이다.")
        for i, k in enumerate(rng.sample(range(len(secs)), 100))
    ]
    edited = list(items)
    for i in rng.sample(range(100), 5):
        edited[i] = (edited[i][0], edited[i][1] + " 이번 판에서 덧붙인 문장이다.")

    def doc(xs: list[tuple[str, str]]) -> str:
        return "# 문서\n\n" + "".join(f"## {t}\n\n{b}\n\n" for t, b in xs)

    old, new = doc(items), doc(edited)
    t0 = time.perf_counter()
    summ = Summarizer(path)
    print(f"end to end: model {path} loaded in {time.perf_counter() - t0:.1f} s")
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        res = compare_documents(old, new, summ, cache)
        t1 = time.perf_counter() - t0
        c = res["counts"]
        print(
            f"end to end 100 sections, 5 edited: {c['edited']} edited / {c['unchanged']} unchanged; "
            f"{res['summaries']['generated']} sections summarized; {t1:.2f} s"
        )
        t0 = time.perf_counter()
        again = compare_documents(old, new, summ, cache)
        print(
            f"end to end, same pair again: {again['summaries']['generated']} summarized, "
            f"{again['summaries']['cached']} from the cache; {time.perf_counter() - t0:.2f} s"
        )
    summ.close()


def against_corpus(rng: random.Random, secs: list[tuple[str, str]]) -> None:
    from summ_assets.core import section_index as si

    per_doc = 20
    docs = []
    for d in range(2000 // per_doc):
        picks = [secs[rng.randrange(len(secs))] for _ in range(per_doc)]
        body = "".join(
            f"## {t} {d}-{i}\n\n{b}\n\n문서 {d}의 {i}번 절이다.\n\n" for i, (t, b) in enumerate(picks)
        )
        docs.append((f"corpus/{d:03d}.md", f"# 문서 {d}\n\n{body}"))
    t0 = time.perf_counter()
    index, tokenized = si.SectionIndex.from_texts(docs)
    print(
        f"corpus index: {len(index)} sections of {len(docs)} documents; built in {time.perf_counter() - t0:.2f} s ({tokenized} tokenized with Kiwi)"
    )
    new = "# 새 문서\n\n" + "".join(
        f"## {t} 새 {i}\n\n{b}\n\n"
        for i, (t, b) in enumerate(secs[rng.randrange(len(secs))] for _ in range(per_doc))
    )
    for label in ("first query (TF-IDF fit included)", "next query"):
        t0 = time.perf_counter()
        res = si.against(new, index)
        print(
            f"corpus query, one {len(res['sections'])}-section page, {label}: {time.perf_counter() - t0:.3f} s "
            f"({res['counts']})"
        )


if __name__ == "__main__":
    main()
