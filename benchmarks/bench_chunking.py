"""Throughput and memory of summ_assets.core.chunking.split_markdown with a real tokenizer.

Usage:
    .venv/bin/python benchmarks/bench_chunking.py [--docs 1000] [--tokenizer DIR]
        [--max-tokens 384] [--min-tokens 8] [--seed 0] [--memory-docs 100]

Generates realistic Markdown documents (Korean + English sentences from word lists, YAML front
matter, nested ATX and setext headings, bullet/numbered lists, code fences whose ``#`` comments must
not become headings, tables, block quotes, CRLF files and some very long sections / paragraphs
without sentence breaks that force paragraph, sentence and token splits), chunks each one with
``split_markdown(text, TokenCounter(tokenizer))`` and checks that the result is lossless:
``front_matter_raw + "".join(section texts) == text`` and ``text[char_start:char_end] == section.text``.

Without --tokenizer the tiny Gemma-style BPE tokenizer is trained on the first 12 bundled documents,
as the tests do. Use e.g. ``--tokenizer artifacts/student_base/<key>`` for the demo's 256k tokenizer.

Figures (one per line, ``<name>: <value> <unit>``):
- sections/s and MB/s come from the timed pass (split_markdown only; generation and checks excluded).
- tracemalloc peak comes from a second, separate pass over the largest documents (tracemalloc slows
  Python down): the largest Python-heap working set while chunking one document (results are dropped
  after each check). It does not see the tokenizer's Rust allocations.
- ru_maxrss is the whole process's peak resident set (interpreter, transformers, tokenizer, the
  generated corpus held in memory), read at the end.
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from summ_assets.core.offline import use_offline_env  # noqa: E402

use_offline_env()

KO_SUBJECTS = [
    "회의는",
    "연구팀은",
    "모델은",
    "시스템은",
    "학생들은",
    "보고서는",
    "서버는",
    "위원회는",
    "팀장은",
    "검색기는",
    "파이프라인은",
    "운영팀은",
]
KO_TIMES = [
    "오후 세 시에",
    "매주 월요일에",
    "내일 아침에",
    "다음 달에",
    "올해 안에",
    "주말마다",
    "배포 직후에",
]
KO_PLACES = [
    "본관 대회의실에서",
    "온라인으로",
    "연구소에서",
    "서울 본사에서",
    "클라우드에서",
    "스테이징 환경에서",
]
KO_OBJECTS = [
    "요약 성능을",
    "문서 검색 결과를",
    "새로운 데이터를",
    "LLM 응답을",
    "RAG 파이프라인을",
    "평가 지표를",
    "예산 계획을",
    "3단계 절차를",
    "p95 지연 시간을",
    "`max_tokens` 설정을",
]
KO_VERBS = [
    "평가합니다.",
    "발표했다.",
    "검토한다.",
    "정리했습니다.",
    "개선할 예정이다.",
    "공유합니다.",
    "분석했다.",
    "확인했나요?",
    "반드시 지켜야 한다!",
    "다시 논의하기로 했다…",
]
EN_SUBJECTS = ["The scheduler", "Our team", "The retriever", "Each worker", "The new model", "The gateway"]
EN_VERBS = ["evaluates", "caches", "rejects", "summarizes", "retries", "streams", "indexes"]
EN_OBJECTS = [
    "every incoming request",
    "the nightly batch",
    "stale embeddings",
    "the release notes",
    "up to 512 tokens",
    "the `config.yaml` file",
]
EN_TAILS = [".", ".", ".", " within 3 seconds.", " when the queue is full!", " before deployment?"]
HEADING_WORDS = [
    "개요",
    "설계",
    "배포",
    "모니터링",
    "장애 대응",
    "평가",
    "비용",
    "Overview",
    "Setup",
    "FAQ",
    "데이터 흐름",
    "보안 정책",
    "Troubleshooting",
    "참고 자료",
    "부록",
]
CODE_LINES = [
    "def handler(event):",
    "    return {'ok': True}",
    "for i in range(10):",
    "    total += i",
    "x = load('data.parquet')",
    "print(f'{x!r}')",
    "SELECT id, name FROM users WHERE active = 1;",
    "kubectl rollout restart deploy/api",
]
CODE_COMMENTS = ["# 설정을 읽는다", "# TODO: retry", "## not a heading", "# 결과를 합친다", "### 캐시 무효화"]


def ko_sentence(rng: random.Random) -> str:
    return " ".join(
        [
            rng.choice(KO_SUBJECTS),
            rng.choice(KO_TIMES),
            rng.choice(KO_PLACES),
            rng.choice(KO_OBJECTS),
            rng.choice(KO_VERBS),
        ]
    )


def en_sentence(rng: random.Random) -> str:
    return f"{rng.choice(EN_SUBJECTS)} {rng.choice(EN_VERBS)} {rng.choice(EN_OBJECTS)}{rng.choice(EN_TAILS)}"


def sentence(rng: random.Random) -> str:
    return ko_sentence(rng) if rng.random() < 0.75 else en_sentence(rng)


def paragraph(rng: random.Random, n_sent: int) -> str:
    return " ".join(sentence(rng) for _ in range(n_sent))


def run_on_paragraph(rng: random.Random, n_words: int) -> str:
    """One huge 'sentence' with no sentence end: only a token-boundary split can cut it."""
    words = [w.rstrip(".?!…") for w in paragraph(rng, n_words // 5 + 1).split()]
    return " ".join(words[:n_words])


def block(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.45:
        return paragraph(rng, rng.randint(1, 6))
    if r < 0.60:
        marker = rng.choice(["-", "*", "1."])
        items = []
        for i in range(rng.randint(2, 6)):
            m = f"{i + 1}." if marker == "1." else marker
            items.append(f"{m} {sentence(rng)}")
            if rng.random() < 0.3:
                items.append(f"    - {sentence(rng)}")
        return "\n".join(items)
    if r < 0.72:
        fence = rng.choice(["```", "~~~", "````"])
        lang = rng.choice(["python", "bash", "sql", ""])
        lines = [
            rng.choice(CODE_COMMENTS if rng.random() < 0.35 else CODE_LINES)
            for _ in range(rng.randint(2, 12))
        ]
        return f"{fence}{lang}\n" + "\n".join(lines) + f"\n{fence}"
    if r < 0.84:
        cols = rng.randint(2, 4)
        head = "| " + " | ".join(rng.choice(HEADING_WORDS) for _ in range(cols)) + " |"
        sep = "|" + "|".join("---" for _ in range(cols)) + "|"
        rows = [
            "| "
            + " | ".join(
                rng.choice([ko_sentence(rng)[:18], str(rng.randint(0, 999)), "—"]) for _ in range(cols)
            )
            + " |"
            for _ in range(rng.randint(1, 6))
        ]
        return "\n".join([head, sep, *rows])
    if r < 0.92:
        return "\n".join(f"> {sentence(rng)}" for _ in range(rng.randint(1, 3)))
    return f"참고: [문서 링크](https://example.com/{rng.randint(1, 9999)}) 와 `inline # code` 를 확인한다."


def heading(rng: random.Random, level: int) -> str:
    title = " ".join(rng.sample(HEADING_WORDS, rng.randint(1, 3)))
    if level <= 2 and rng.random() < 0.12:
        return f"{title}\n{('=' if level == 1 else '-') * rng.randint(3, 12)}"
    closing = " " + "#" * level if rng.random() < 0.1 else ""
    return f"{'#' * level} {title}{closing}"


def make_document(rng: random.Random, i: int) -> str:
    parts: list[str] = []
    if rng.random() < 0.6:
        parts.append(f"---\ntitle: 문서 {i}\ntags: [bench, chunking]\nauthor: bench\n---")
    if rng.random() < 0.3:  # preamble before the first heading
        parts.append(paragraph(rng, rng.randint(1, 3)))
    level = 1
    for _ in range(rng.randint(3, 20)):
        level = max(1, min(6, level + rng.choice([-2, -1, 0, 1, 1, 2])))
        parts.append(heading(rng, level))
        r = rng.random()
        if r < 0.08:  # heading-only block (folded into a deeper child when one follows)
            continue
        if r < 0.11:  # very long section: many paragraphs
            parts.extend(paragraph(rng, rng.randint(3, 8)) for _ in range(rng.randint(10, 40)))
        elif r < 0.125:  # one giant paragraph without sentence ends: token-boundary split
            parts.append(run_on_paragraph(rng, rng.randint(400, 1500)))
        else:
            parts.extend(block(rng) for _ in range(rng.randint(1, 6)))
    text = "\n\n".join(parts) + rng.choice(["\n", "", "\n\n"])
    if rng.random() < 0.05:
        text = text.replace("\n", "\r\n")
    return text


def load_tokenizer(path: Path | None, tmp: Path):
    if path is not None:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(path), str(path)
    from summ_assets.core.models import train_tiny_tokenizer

    texts = [p.read_text(encoding="utf-8") for p in sorted((REPO / "data" / "raw").glob("*.md"))[:12]]
    return train_tiny_tokenizer(texts, tmp / "tok"), "tiny BPE (trained on 12 bundled docs, as in the tests)"


def check_lossless(text: str, doc) -> None:
    joined = doc.front_matter_raw + "".join(s.text for s in doc.sections)
    if joined != text:
        raise AssertionError(f"{doc.doc_id}: sections do not reassemble the document")
    for s in doc.sections:
        if text[s.char_start : s.char_end] != s.text:
            raise AssertionError(f"{doc.doc_id}: section {s.ordinal} offsets do not match its text")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=1000, help="number of generated documents")
    ap.add_argument("--tokenizer", type=Path, default=None, help="save_pretrained folder with a tokenizer")
    ap.add_argument("--max-tokens", type=int, default=384, help="section token budget (profile default)")
    ap.add_argument("--min-tokens", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--memory-docs",
        type=int,
        default=100,
        help="largest documents re-chunked under tracemalloc (0 = skip; tracemalloc is ~2.5x slower)",
    )
    args = ap.parse_args()

    from summ_assets.core.chunking import TokenCounter, split_markdown

    rng = random.Random(args.seed)
    docs = [make_document(rng, i) for i in range(args.docs)]
    n_bytes = sum(len(d.encode("utf-8")) for d in docs)

    with tempfile.TemporaryDirectory(prefix="bench-chunk-") as tmp:
        tok, tok_name = load_tokenizer(args.tokenizer, Path(tmp))
        counter = TokenCounter(tok)
        print(f"tokenizer: {tok_name} (vocab {len(tok)})")
        print(f"budget: max_tokens={args.max_tokens} min_tokens={args.min_tokens}")
        split_markdown(docs[0], counter, doc_id="warmup", max_tokens=args.max_tokens)  # warm-up

        n_sections = n_split = over_budget = 0
        tokens = 0
        per_doc: list[float] = []
        for i, text in enumerate(docs):
            t0 = time.perf_counter()
            doc = split_markdown(
                text, counter, doc_id=f"doc{i}", max_tokens=args.max_tokens, min_tokens=args.min_tokens
            )
            per_doc.append(time.perf_counter() - t0)
            check_lossless(text, doc)
            n_sections += len(doc.sections)
            n_split += sum(1 for s in doc.sections if s.n_parts > 1)
            over_budget += sum(1 for s in doc.sections if s.token_count > args.max_tokens)
            tokens += sum(s.token_count for s in doc.sections)
        elapsed = sum(per_doc)

        print(f"documents: {len(docs)} (all lossless)")
        print(f"corpus_size: {n_bytes / 1e6:.2f} MB ({tokens} tokens in sections)")
        print(f"sections: {n_sections} ({n_split} are parts of split sections)")
        print(f"sections_over_budget: {over_budget} (a short tail merged into the part before it)")
        print(f"chunking_time: {elapsed:.2f} s")
        print(f"sections_per_s: {n_sections / elapsed:.1f} sections/s")
        print(f"throughput: {n_bytes / 1e6 / elapsed:.3f} MB/s")
        print(f"docs_per_s: {len(docs) / elapsed:.1f} docs/s")
        per_doc.sort()
        print(
            f"per_doc_latency: median {statistics.median(per_doc) * 1e3:.2f} ms, "
            f"p99 {per_doc[int(0.99 * (len(per_doc) - 1))] * 1e3:.2f} ms, max {per_doc[-1] * 1e3:.1f} ms"
        )

        if args.memory_docs > 0:
            # the peak is a per-document working set: the largest documents decide it
            big = sorted(range(len(docs)), key=lambda i: -len(docs[i]))[: args.memory_docs]
            tracemalloc.start()
            for i in big:
                doc = split_markdown(
                    docs[i], counter, doc_id=f"doc{i}", max_tokens=args.max_tokens, min_tokens=args.min_tokens
                )
                check_lossless(docs[i], doc)
                del doc
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            print(
                f"tracemalloc_peak: {peak / 2**20:.2f} MiB (Python heap, one document at a time; "
                f"separate pass over the {len(big)} largest documents)"
            )
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(f"ru_maxrss: {maxrss / 1024:.1f} MiB (whole process peak, incl. imports and the corpus)")


if __name__ == "__main__":
    main()
