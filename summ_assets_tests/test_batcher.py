"""`MicroBatcher` on its own, with plain Python batch functions (no model, no tokenizer)."""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time
from collections.abc import Callable

import pytest

from summ_assets.serving.batcher import BatcherClosed, MicroBatcher


class Recorder:
    """A batch function that records its batches; `gate` (when set) holds each call until released."""

    def __init__(self, fn: Callable[[str], object] = str.upper, gate: threading.Event | None = None) -> None:
        self.fn = fn
        self.gate = gate
        self.batches: list[list[str]] = []
        self.started = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, items: list[str]) -> list[object]:
        with self.lock:
            self.batches.append(list(items))
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(10), "test gate never released"
        return [self.fn(x) for x in items]


def _items(tag: str, n: int) -> list[str]:
    return [f"{tag}{i}" for i in range(n)]


def test_results_map_back_to_their_request_in_order_and_batches_stay_small() -> None:
    run = Recorder()
    with MicroBatcher(run, max_batch=3, window_s=0.1) as b:
        requests = {tag: _items(tag, n) for tag, n in (("b", 1), ("a", 7), ("c", 4), ("d", 0))}
        futures = {tag: b.submit(items) for tag, items in requests.items()}
        for tag, items in requests.items():
            assert futures[tag].result(timeout=10) == [x.upper() for x in items]
    assert run.batches, "nothing ran"
    assert all(1 <= len(batch) <= 3 for batch in run.batches)
    assert sorted(x for batch in run.batches for x in batch) == sorted(
        _items("a", 7) + ["b0"] + _items("c", 4)
    )
    # requests submitted together shared batches
    assert any(len({x[0] for x in batch}) > 1 for batch in run.batches)


def test_a_short_request_after_a_long_one_is_answered_in_the_first_or_second_batch() -> None:
    gate = threading.Event()
    run = Recorder(gate=gate)
    with MicroBatcher(run, max_batch=4, window_s=0.0) as b:
        long = b.submit(_items("long", 20))
        assert run.started.wait(10)  # the first batch (long items only) is running
        short = b.submit(["short"])
        gate.set()
        assert short.result(timeout=10) == ["SHORT"]
        assert long.result(timeout=10) == [x.upper() for x in _items("long", 20)]
    first_with_short = next(i for i, batch in enumerate(run.batches) if "short" in batch)
    assert first_with_short <= 1
    assert all(len(batch) <= 4 for batch in run.batches)
    assert len(run.batches) == 6  # 21 items in batches of at most 4


def test_round_robin_takes_items_from_every_waiting_request() -> None:
    run = Recorder()
    with MicroBatcher(run, max_batch=4, window_s=1.0) as b:
        # y and z (3 items) keep the window open until x arrives
        futs = [b.submit(_items("y", 2)), b.submit(_items("z", 1)), b.submit(_items("x", 10))]
        assert [f.result(timeout=10) for f in futs] == [
            [x.upper() for x in _items(tag, n)] for tag, n in (("y", 2), ("z", 1), ("x", 10))
        ]
    # one item of each waiting request in turn, in submission order, at most max_batch a batch
    assert run.batches == [
        ["y0", "z0", "x0", "y1"],
        ["x1", "x2", "x3", "x4"],
        ["x5", "x6", "x7", "x8"],
        ["x9"],
    ]


def test_an_exception_in_run_batch_fails_only_the_requests_in_that_batch() -> None:
    batches: list[list[str]] = []

    def run(items: list[str]) -> list[str]:
        batches.append(list(items))
        if any(x.startswith("bad") for x in items):
            raise ValueError(f"cannot do {items}")
        return [x.upper() for x in items]

    with MicroBatcher(run, max_batch=2, window_s=0.5) as b:
        ok = b.submit(["ok0"])  # the window is open: the next request joins its batch
        bad = b.submit(["bad0", "bad1", "bad2"])
        other = b.submit(["c0", "c1"])  # not in the failing batch (it is full)
        with pytest.raises(ValueError, match="cannot do"):
            bad.result(timeout=10)
        with pytest.raises(ValueError, match="cannot do"):  # it shared the failing batch
            ok.result(timeout=10)
        assert other.result(timeout=10) == ["C0", "C1"]
        # the worker carries on
        assert b.submit(["fine"]).result(timeout=10) == ["FINE"]
    assert batches[0] == ["ok0", "bad0"]
    assert not any(
        "bad1" in batch or "bad2" in batch for batch in batches
    )  # the rest was dropped  # the rest was dropped


def test_a_wrong_number_of_results_is_an_error_not_a_hang() -> None:
    with MicroBatcher(lambda items: items[:-1], max_batch=4, window_s=0.0) as b:
        with pytest.raises(RuntimeError, match="returned 1 results for 2 items"):
            b.submit(["a", "b"]).result(timeout=10)


def test_cancelled_requests_are_dropped_before_their_items_run() -> None:
    gate = threading.Event()
    run = Recorder(gate=gate)
    with MicroBatcher(run, max_batch=2, window_s=0.0) as b:
        first = b.submit(["a0", "a1"])
        assert run.started.wait(10)
        dropped = b.submit(_items("drop", 5))
        assert dropped.cancel()
        gate.set()
        assert first.result(timeout=10) == ["A0", "A1"]
        assert b.submit(["b0"]).result(timeout=10) == ["B0"]
    assert not any(x.startswith("drop") for batch in run.batches for x in batch)


def test_close_stops_the_worker_and_fails_what_is_still_waiting() -> None:
    gate = threading.Event()
    run = Recorder(gate=gate)
    b = MicroBatcher(run, max_batch=2, window_s=0.0, name="test-batcher")
    busy = b.submit(_items("a", 6))
    assert run.started.wait(10)
    worker = b._worker
    assert worker is not None and worker.is_alive() and worker.name == "test-batcher"
    closer = threading.Thread(target=b.close)
    closer.start()
    time.sleep(0.05)
    gate.set()  # the running batch finishes; the rest of the request is not generated
    closer.join(10)
    assert not worker.is_alive() and b.closed
    with pytest.raises(BatcherClosed, match="closed"):
        busy.result(timeout=10)
    assert len(run.batches) == 1
    with pytest.raises(BatcherClosed):
        b.submit(["late"])
    b.close()  # idempotent


def test_idle_close_and_empty_requests() -> None:
    b: MicroBatcher[int, int] = MicroBatcher(lambda xs: [x * 2 for x in xs], max_batch=8)
    assert b.submit([]).result(timeout=1) == []  # answered at once, no worker needed
    assert b._worker is None
    assert b.submit(range(3)).result(timeout=10) == [0, 2, 4]
    worker = b._worker
    b.close()
    assert worker is not None and not worker.is_alive()
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(lambda xs: xs, max_batch=0)


def test_many_threads_submitting_at_once_all_get_their_own_results() -> None:
    run = Recorder(fn=lambda x: x[::-1])
    with MicroBatcher(run, max_batch=5, window_s=0.05) as b, cf.ThreadPoolExecutor(8) as pool:
        barrier = threading.Barrier(8)

        def one(i: int) -> tuple[list[str], list[object]]:
            items = _items(f"t{i}-", i + 1)
            barrier.wait()
            return items, b.submit(items).result(timeout=10)

        for items, results in pool.map(one, range(8)):
            assert results == [x[::-1] for x in items]
    assert all(len(batch) <= 5 for batch in run.batches)
    assert sum(len(batch) for batch in run.batches) == sum(range(1, 9))
