"""The HTTP API under load, as a user would run it: many clients posting whole documents at once.

Usage:
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_serving_load.py [--model DIR] [--clients 64]
        [--duration 60] [--solo 60] [--timeout 120] [--max-queue-sections 256]

The server runs in this process (uvicorn in a thread on 127.0.0.1, a free port), with the admission
control of `summ_assets.serving.admission`; the clients are threads with httpx. Each client posts one
of the `data/eval/new` documents with 5-20 sections, waits for the answer, and posts the next; on a
``503`` it waits the ``Retry-After`` it was given (what a well-behaved client does) and tries again.
A prober asks ``GET /health`` 4 times a second throughout. First one client alone for `--solo` seconds
(the throughput to compare with), then `--clients` clients for `--duration` seconds, side by side in
one run. Without --model the promoted student is served; without one, a tiny random student (the
figures then measure the serving path only).

Prints one line per figure: ``<name>: <value> <unit>``: completed documents per second (load and
alone, and their ratio), p50/p95/p99 latency of the 200 answers, answers by status, the largest
/health latency.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from summ_assets.core.offline import use_offline_env

use_offline_env()

from benchmarks.bench_serving import pct, tiny_student  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def documents(summ) -> list[str]:
    """The data/eval/new documents with 5-20 sections (as the server cuts them)."""
    out = []
    for p in sorted((REPO / "data" / "eval" / "new").glob("*.md")):
        text = p.read_text(encoding="utf-8")
        if 5 <= len(summ.chunk(text, p.name)) <= 20:
            out.append(text)
    if not out:  # another tokenizer (the tiny fallback) cuts other sizes: take them all
        out = [p.read_text(encoding="utf-8") for p in sorted((REPO / "data" / "eval" / "new").glob("*.md"))]
    return out


def run_clients(url: str, docs: list[str], clients: int, duration: float, timeout: float) -> dict:
    import httpx

    stop = time.monotonic() + duration
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: collections.Counter = collections.Counter()
    health: list[float] = []

    def client(i: int) -> None:
        n = i
        with httpx.Client(timeout=timeout + 30) as http:
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                try:
                    r = http.post(
                        f"{url}/summarize", json={"text": docs[n % len(docs)], "doc_id": f"c{i}-{n}"}
                    )
                    code = r.status_code
                except httpx.HTTPError as exc:
                    code, r = type(exc).__name__, None
                dt = time.perf_counter() - t0
                with lock:
                    statuses[code] += 1
                    if code == 200 and time.monotonic() <= stop + timeout:
                        latencies.append(dt)
                if code == 503 and r is not None:
                    time.sleep(
                        min(float(r.headers.get("Retry-After", "1")), max(0.0, stop - time.monotonic()))
                    )
                n += clients

    def prober() -> None:
        with httpx.Client(timeout=30) as http:
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                http.get(f"{url}/health")
                health.append(time.perf_counter() - t0)
                time.sleep(0.25)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    threads.append(threading.Thread(target=prober))
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"latencies": latencies, "statuses": statuses, "health": health, "wall": wall}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="model folder (default: the promoted student, else a tiny random one)")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--solo", type=float, default=60.0, help="seconds of one client alone first")
    ap.add_argument(
        "--timeout", type=float, default=120.0, help="the server's request timeout (504 after it)"
    )
    ap.add_argument("--max-queue-sections", type=int, default=None)
    args = ap.parse_args()

    from summ_assets.serving import BackgroundServer, ServingError, Summarizer, create_app, resolve_model_path
    from summ_assets.serving.http import DEFAULT_MAX_QUEUE_SECTIONS

    tmp = tempfile.TemporaryDirectory()
    try:
        path = resolve_model_path(args.model)
    except ServingError as exc:
        print(f"no promoted student ({exc}); serving a tiny random student: serving-path figures only")
        path = tiny_student(Path(tmp.name))
    summ = Summarizer(path)
    docs = documents(summ)
    bound = args.max_queue_sections or DEFAULT_MAX_QUEUE_SECTIONS
    print(
        f"model: {path}; {len(docs)} documents of 5-20 sections; timeout {args.timeout:g} s; queue bound {bound}"
    )
    app = create_app(summ, timeout_s=args.timeout, max_queue_sections=bound)
    with BackgroundServer(app) as srv:
        solo = run_clients(srv.url, docs, 1, args.solo, args.timeout)
        load = run_clients(srv.url, docs, args.clients, args.duration, args.timeout)
    summ.close()
    solo_rate = len(solo["latencies"]) / solo["wall"]
    rate = len(load["latencies"]) / load["wall"]
    print(f"alone: completed documents/s: {solo_rate:.3f} ({len(solo['latencies'])} in {solo['wall']:.0f} s)")
    print(
        f"{args.clients} clients: completed documents/s: {rate:.3f} ({len(load['latencies'])} in {load['wall']:.0f} s)"
    )
    print(
        f"{args.clients} clients: throughput vs alone: {rate / solo_rate if solo_rate else float('nan'):.2f} x"
    )
    lat = load["latencies"]
    print(
        f"{args.clients} clients: latency of 200s p50/p95/p99: {pct(lat, 50):.1f} / {pct(lat, 95):.1f} / "
        f"{pct(lat, 99):.1f} s (half the timeout: {args.timeout / 2:g} s)"
    )
    print(f"{args.clients} clients: answers by status: {dict(sorted(load['statuses'].items(), key=str))}")
    print(
        f"{args.clients} clients: /health latency max / p99: {max(load['health']) * 1000:.0f} / "
        f"{pct(load['health'], 99) * 1000:.0f} ms ({len(load['health'])} probes at 4 Hz)"
    )
    tmp.cleanup()


if __name__ == "__main__":
    main()
