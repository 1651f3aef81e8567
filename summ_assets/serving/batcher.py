"""A small generic micro-batcher: one background worker that batches items across requests.

``MicroBatcher(run_batch, max_batch=8, window_s=0.02)``; ``submit(items)`` returns a future of the
results of `items`, in order. The worker waits up to `window_s` after a request arrives for others to
join, then calls ``run_batch(batch) -> results`` (one result per item, in order) on batches of at most
`max_batch` items, taking items round-robin from every waiting request, so concurrent requests share
batches and one long request does not starve short ones. When `run_batch` raises, every request with
an item in that batch gets the exception (their other items are dropped); the worker carries on.
Cancelling a request's future drops its items that are not in a batch yet. `close()` stops the worker:
requests still waiting get `BatcherClosed`.

Knows nothing about models: `run_batch` is any function of a list.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class BatcherClosed(RuntimeError):
    """The batcher was closed before (or while) the request was served."""


@dataclass(eq=False)
class _Request:
    items: list[Any]
    future: cf.Future
    results: list[Any] = field(default_factory=list)
    next: int = 0  # index of the next item to put in a batch
    done: int = 0  # items with a result

    def __post_init__(self) -> None:
        self.results = [None] * len(self.items)


class MicroBatcher(Generic[T, R]):
    """Batches items submitted by many threads into calls of `run_batch` on one worker thread."""

    def __init__(
        self,
        run_batch: Callable[[list[T]], Sequence[R]],
        *,
        max_batch: int,
        window_s: float = 0.02,
        name: str = "micro-batcher",
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.window_s = window_s
        self.name = name
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._closed = False
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def closed(self) -> bool:
        return self._closed

    def submit(self, items: Iterable[T]) -> cf.Future[list[R]]:
        """Queue `items`; the future's result is their results, in order (``[]`` at once for no items).

        Raises `BatcherClosed` after `close()`.
        """
        items = list(items)
        fut: cf.Future[list[R]] = cf.Future()
        with self._lock:
            if self._closed:
                raise BatcherClosed(f"{self.name} is closed")
            if not items:
                fut.set_result([])
                return fut
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._worker.start()
            self._queue.put(_Request(items, fut))
        return fut

    def queue_size(self) -> int:
        """Requests submitted that the worker has not picked up yet."""
        return self._queue.qsize()

    def close(self, timeout: float | None = 5.0) -> None:
        """Stop the worker (after the batch it is running, if any); waiting requests get `BatcherClosed`."""
        with self._lock:
            self._closed = True
            worker = self._worker
            if worker is not None and worker.is_alive():
                self._queue.put(None)
        if worker is not None:
            worker.join(timeout=timeout)

    def __enter__(self) -> MicroBatcher[T, R]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- worker

    def _run(self) -> None:
        active: list[_Request] = []
        while True:
            if not active:
                req = self._queue.get()
                if req is None:
                    return self._shut(active)
                active.append(req)
                # the micro-batching window: wait a little for requests arriving together
                deadline = time.monotonic() + self.window_s
                while sum(len(r.items) - r.next for r in active) < self.max_batch:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        req = self._queue.get(timeout=remaining)
                    except queue.Empty:
                        break
                    if req is None:
                        return self._shut(active)
                    active.append(req)
            else:  # busy: take whatever arrived meanwhile, without waiting
                while True:
                    try:
                        req = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if req is None:
                        return self._shut(active)
                    active.append(req)
            active = [r for r in active if not r.future.cancelled()]
            if not active:
                continue
            picks = self._pick(active)
            in_batch = list({id(r): r for r, _ in picks}.values())
            try:
                results = list(self.run_batch([r.items[i] for r, i in picks]))
                if len(results) != len(picks):
                    raise RuntimeError(
                        f"{self.name}: run_batch returned {len(results)} results for {len(picks)} items"
                    )
            except Exception as exc:
                _fail(in_batch, exc)
                active = [r for r in active if not any(r is b for b in in_batch)]
                continue
            for (r, i), result in zip(picks, results, strict=True):
                r.results[i] = result
                r.done += 1
            for r in in_batch:
                if r.done == len(r.items):
                    with contextlib.suppress(cf.InvalidStateError):
                        r.future.set_result(list(r.results))
            active = [r for r in active if r.done < len(r.items)]

    def _pick(self, active: list[_Request]) -> list[tuple[_Request, int]]:
        """At most `max_batch` (request, item index) pairs, round-robin over the waiting requests."""
        picks: list[tuple[_Request, int]] = []
        while len(picks) < self.max_batch:
            took = False
            for r in active:
                if r.next < len(r.items) and len(picks) < self.max_batch:
                    picks.append((r, r.next))
                    r.next += 1
                    took = True
            if not took:
                break
        return picks

    def _shut(self, active: list[_Request]) -> None:
        """Fail the requests in hand and any still queued (submitted while closing)."""
        pending = list(active)
        while True:
            try:
                req = self._queue.get_nowait()
            except queue.Empty:
                break
            if req is not None:
                pending.append(req)
        _fail(pending, BatcherClosed(f"{self.name} closed"))


def _fail(requests: Iterable[_Request], exc: BaseException) -> None:
    for r in requests:
        with contextlib.suppress(cf.InvalidStateError):
            r.future.set_exception(exc)
