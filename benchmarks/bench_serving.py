"""Serving throughput: the HTTP API under concurrent clients, and int8-quantized vs fp32 generation.

Usage:
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_serving.py [--model DIR] [--compare-teacher DIR]
        [--clients 4] [--requests 2] [--payload section|document] [--max-new-tokens N]
        [--quant-sections 8] [--no-quant]

The server runs in this process (uvicorn in a thread on 127.0.0.1, a free port); the clients are
threads with httpx, so all traffic stays on the loopback interface. Counts are bounded (clients <= 32,
requests per client <= 50). Without --model the promoted student is served; when there is none
(fresh checkout, `make bench`), a tiny random student is built in a temporary folder and the figures
measure serving overhead only. The profile comes from $SUMM_PROFILE (default demo).

Prints one line per figure: ``<name>: <value> <unit>``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from summ_assets.core.offline import use_offline_env

use_offline_env()

REPO = Path(__file__).resolve().parents[1]
DOCS = ["ko-rag-pipeline.md", "ko-lora-finetuning.md", "ko-knowledge-distillation.md", "ko-docker-basics.md"]


def tiny_student(tmp: Path) -> Path:
    from summ_assets.core.models import build_tiny_model, train_tiny_tokenizer

    texts = [p.read_text(encoding="utf-8") for p in sorted((REPO / "data" / "raw").glob("*.md"))[:12]]
    train_tiny_tokenizer(texts, tmp / "tok")
    build_tiny_model("student", tmp / "tok", tmp / "student")
    return tmp / "student"


def payloads(summ, kind: str) -> list[str]:
    """Request bodies: single sections (default; a CPU answers them in seconds) or whole documents."""
    docs = [(REPO / "data" / "raw" / d).read_text(encoding="utf-8") for d in DOCS]
    if kind == "document":
        return docs
    out = []
    for i, text in enumerate(docs):
        out += [s.text for s in summ.chunk(text, f"doc{i}") if s.text.strip()]
    # interleave documents so consecutive requests differ
    return [out[(i * 7) % len(out)] for i in range(len(out))]


def pct(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if values else float("nan")


def load_test(summ, bodies: list[str], clients: int, per_client: int, label: str) -> None:
    import httpx

    from summ_assets.serving import BackgroundServer, create_app

    app = create_app(summ, max_bytes=2_000_000, timeout_s=600)
    latencies: list[float] = []
    failures: list[str] = []
    sections = 0
    with BackgroundServer(app) as srv:
        with httpx.Client(base_url=srv.url, timeout=600) as warm:  # first call pays lazy init
            warm.post("/summarize", content=bodies[0].encode())

        def client(ci: int) -> list[tuple[float, int, int, str | None]]:
            res = []
            with httpx.Client(base_url=srv.url, timeout=600) as http:
                for k in range(per_client):
                    body = bodies[(ci * per_client + k) % len(bodies)]
                    t = time.perf_counter()
                    r = http.post(
                        "/summarize", content=body.encode(), headers={"content-type": "text/markdown"}
                    )
                    dt = time.perf_counter() - t
                    if r.status_code == 200:
                        d = r.json()
                        res.append((dt, d["n_sections"], d["tokens"], None))
                    else:
                        res.append((dt, 0, 0, f"{r.status_code}: {r.text[:120]}"))
            return res

        before = dict(summ.stats)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            results = [x for part in pool.map(client, range(clients)) for x in part]
        wall = time.perf_counter() - t0
    for dt, n, _tok, err in results:
        latencies.append(dt)
        sections += n
        if err:
            failures.append(err)
    tokens = summ.stats["tokens"] - before["tokens"]
    batches = summ.stats["batches"] - before["batches"]
    n = len(results)
    print(f"{label} requests: {n} ({clients} clients x {per_client}), {len(failures)} failed")
    print(f"{label} throughput: {n / wall:.2f} requests/s")
    print(f"{label} latency p50: {pct(latencies, 50):.2f} s")
    print(f"{label} latency p95: {pct(latencies, 95):.2f} s")
    print(f"{label} sections: {sections} in {batches} batches ({sections / max(batches, 1):.1f} per batch)")
    print(f"{label} generated: {tokens / wall:.1f} tokens/s (wall clock, all clients)")
    for f in failures[:3]:
        print(f"{label} failure: {f}")


def quant_compare(path: Path, profile, n_sections: int, max_new_tokens: int | None) -> None:
    import gc

    from summ_assets.serving import Summarizer

    runs = {}
    texts: list[str] = []
    for mode in (None, "int8"):
        summ = Summarizer(path, profile=profile, quantize=mode, max_new_tokens=max_new_tokens)
        if summ.device != "cpu":
            print(
                "int8 vs fp32: skipped (dynamic int8 quantization is CPU-only; on CUDA use --quantize 8bit/4bit)"
            )
            return
        if not texts:
            texts = payloads(summ, "section")[:n_sections]
        summ.generate(texts[:1])  # warm-up
        t = time.perf_counter()
        outs, st = summ.generate(texts)
        runs[mode or "fp32"] = (outs, st, time.perf_counter() - t)
        summ.close()
        del summ
        gc.collect()
    (o32, s32, t32), (o8, s8, t8) = runs["fp32"], runs["int8"]
    same = sum(a == b for a, b in zip(o32, o8, strict=True))
    print(f"fp32 generation: {s32['tokens_per_s']:.1f} tokens/s ({len(texts)} sections in {t32:.1f} s)")
    print(f"int8 generation: {s8['tokens_per_s']:.1f} tokens/s ({len(texts)} sections in {t8:.1f} s)")
    print(f"int8 speed-up: {t32 / t8:.2f} x (wall clock, same sections)")
    print(f"int8 identical summaries: {same}/{len(texts)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model folder (default: the promoted student)")
    ap.add_argument(
        "--compare-teacher", metavar="DIR", help="also load-test this model (e.g. the merged teacher)"
    )
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--requests", type=int, default=2, help="requests per client")
    ap.add_argument("--payload", choices=("section", "document"), default="section")
    ap.add_argument(
        "--max-new-tokens", type=int, default=None, help="default: the profile's eval.max_new_tokens"
    )
    ap.add_argument("--quant-sections", type=int, default=8, help="sections for the int8 vs fp32 comparison")
    ap.add_argument("--no-quant", action="store_true", help="skip the int8 vs fp32 comparison")
    args = ap.parse_args()
    if not (1 <= args.clients <= 32 and 1 <= args.requests <= 50 and 1 <= args.quant_sections <= 64):
        ap.error(
            "bounded load only: 1 <= --clients <= 32, 1 <= --requests <= 50, 1 <= --quant-sections <= 64"
        )

    from summ_assets.core.profiles import get_profile
    from summ_assets.serving import ServingError, Summarizer, resolve_model_path

    profile = get_profile()
    tmp = tempfile.TemporaryDirectory(prefix="bench-serving-")
    try:
        path = resolve_model_path(args.model)
        label = "student"
    except ServingError as exc:
        if args.model:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"note: {exc}\nnote: using a tiny random student (figures measure serving overhead only)")
        path, label = tiny_student(Path(tmp.name)), "tiny-student"
    print(f"profile: {profile.name}; model: {path}")

    summ = Summarizer(path, profile=profile, max_new_tokens=args.max_new_tokens)
    print(
        f"{label} load: {summ.load_seconds:.1f} s ({summ.parameters / 1e6:.1f} M parameters, {summ.device})"
    )
    bodies = payloads(summ, args.payload)
    load_test(summ, bodies, args.clients, args.requests, label)
    summ.close()
    del summ

    if args.compare_teacher:
        teacher = Summarizer(
            resolve_model_path(args.compare_teacher), profile=profile, max_new_tokens=args.max_new_tokens
        )
        print(f"teacher load: {teacher.load_seconds:.1f} s ({teacher.parameters / 1e6:.1f} M parameters)")
        load_test(teacher, bodies, args.clients, args.requests, "teacher")
        teacher.close()
        del teacher

    if not args.no_quant:
        quant_compare(path, profile, args.quant_sections, args.max_new_tokens)
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
