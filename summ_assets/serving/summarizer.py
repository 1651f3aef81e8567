"""`Summarizer`: one loaded model that summarizes documents section by section (thread-safe).

Pure Python (no Dagster): the CLI (`summ-assets summarize`, `summ-assets serve`), the HTTP app
(`summ_assets.serving.http`) and the benchmark all go through it.

- Loading: `summ_assets.serving.loader.load_model` (the profile's device and dtype, optional quantization).
- Chunking: documents are cut exactly like the graph cuts them (`split_markdown` with the model's
  tokenizer and the profile's section budget).
- Summarizing: the shared prompt (`summarize_texts`) with the decoding settings saved in the model
  folder's generation_config.json (length, n-gram ban, repetition penalty, one-sentence cut; greedy unless
  it says otherwise), not the current profile's.
- Concurrency: `submit()` hands sections to a `MicroBatcher`: it waits up to `batch_window_s` (20 ms)
  for other requests, then generates batches of at most ``eval.batch_size`` sections, taking sections
  round-robin from every waiting request, so concurrent HTTP requests share batches and one long
  document does not starve short ones. `generate()` (the CLI path) and the batcher's worker both hold
  one lock around `model.generate`.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from summ_assets.core.chunking import Section, TokenCounter, split_markdown
from summ_assets.core.decoding import saved_decoding, summarize_texts
from summ_assets.core.profiles import Profile, get_profile
from summ_assets.serving.batcher import BatcherClosed, MicroBatcher
from summ_assets.serving.loader import ServingError, load_model

log = logging.getLogger(__name__)

Stats = dict[str, float]


def section_row(sec: Section, summary: str) -> dict[str, Any]:
    """One section's answer: heading_path, part, n_parts, summary, char_start, char_end."""
    return {
        "heading_path": sec.heading_path,
        "part": sec.part,
        "n_parts": sec.n_parts,
        "summary": summary,
        "char_start": sec.char_start,
        "char_end": sec.char_end,
    }


def _rate(tokens: float, seconds: float) -> Stats:
    return {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds if seconds else 0.0}


class Summarizer:
    """One loaded model + tokenizer that summarizes documents section by section (thread-safe)."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        profile: Profile | None = None,
        quantize: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        threads: int | None = None,
        batch_window_s: float = 0.02,
        max_new_tokens: int | None = None,
        batch_size: int | None = None,
    ) -> None:
        self.profile = profile or get_profile()
        loaded = load_model(
            model_path, self.profile, quantize=quantize, device=device, dtype=dtype, threads=threads
        )
        self.path = loaded.path
        self.quantize = loaded.quantize
        self.device = loaded.device
        self.dtype = loaded.dtype
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self._chunk_tokenizer = loaded.chunk_tokenizer
        self.parameters = loaded.parameters
        self.do_sample = loaded.do_sample
        self.load_seconds = loaded.load_seconds
        # decoding as the model folder records it (generation_config.json), not the current profile's
        self.decoding = saved_decoding(self.model.generation_config, self.profile.eval)
        self.max_new_tokens = max_new_tokens or self.decoding["max_new_tokens"]
        self.batch_size = max(1, batch_size or self.profile.eval.batch_size)
        self.max_prompt_tokens = self.profile.data.max_prompt_tokens
        self.batch_window_s = batch_window_s
        self.counter = TokenCounter(self._chunk_tokenizer)

        self._gen_lock = threading.Lock()
        self._chunk_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._closed = False
        # the worker calls self._generate_batch at call time (tests patch it on the instance)
        self._batcher: MicroBatcher[str, tuple[str, Stats]] = MicroBatcher(
            self._run_batch, max_batch=self.batch_size, window_s=batch_window_s, name="summ-batcher"
        )
        self.stats = {"requests": 0, "sections": 0, "batches": 0, "max_batch": 0, "tokens": 0, "seconds": 0.0}
        log.info(
            "loaded %s on %s (%s%s) in %.1fs",
            self.path,
            self.device,
            self.dtype,
            f", {self.quantize}" if self.quantize else "",
            self.load_seconds,
        )

    # ---- description

    def info(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "device": self.device,
            "dtype": self.dtype,
            "quantize": self.quantize,
            "parameters": self.parameters,
            "profile": self.profile.name,
            "max_new_tokens": self.max_new_tokens,
            "decoding": {**self.decoding, "max_new_tokens": self.max_new_tokens},
            "batch_size": self.batch_size,
            "max_section_tokens": self.profile.data.max_section_tokens,
        }

    # ---- chunking

    def chunk(self, text: str, doc_id: str = "doc") -> list[Section]:
        """Sections of `text` exactly as the graph cuts them (the model's tokenizer, the profile's budget)."""
        with self._chunk_lock:
            return split_markdown(
                text,
                self.counter,
                doc_id=doc_id,
                max_tokens=self.profile.data.max_section_tokens,
                min_tokens=self.profile.data.min_section_tokens,
                source=doc_id,
            ).sections

    # ---- generation (always under the lock)

    def _generate_batch(self, texts: list[str]) -> tuple[list[str], Stats]:

        with self._gen_lock:
            outs, st = summarize_texts(
                self.model,
                self.tokenizer,
                texts,
                max_prompt_tokens=self.max_prompt_tokens,
                max_new_tokens=self.max_new_tokens,
                batch_size=len(texts),
                do_sample=self.do_sample,
                **{k: v for k, v in self.decoding.items() if k != "max_new_tokens"},
            )
            self.stats["batches"] += 1
            self.stats["sections"] += len(texts)
            self.stats["max_batch"] = max(self.stats["max_batch"], len(texts))
            self.stats["tokens"] += int(st["tokens"])
            self.stats["seconds"] += float(st["seconds"])
        return outs, st

    def generate(
        self, texts: list[str], progress: Callable[[int], None] | None = None
    ) -> tuple[list[str], Stats]:
        """Summaries of `texts` (synchronous, longest first in batches of `batch_size`).

        Returns (summaries in input order, {"tokens", "seconds", "tokens_per_s"}); `progress(n)` is called
        after each batch with the number of texts it finished.
        """
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        results: list[str] = [""] * len(texts)
        tokens, seconds = 0.0, 0.0
        for s in range(0, len(order), self.batch_size):
            idx = order[s : s + self.batch_size]
            outs, st = self._generate_batch([texts[i] for i in idx])
            for i, o in zip(idx, outs, strict=True):
                results[i] = o
            tokens += st["tokens"]
            seconds += st["seconds"]
            if progress:
                progress(len(idx))
        return results, _rate(tokens, seconds)

    # ---- micro-batched path (HTTP)

    def _run_batch(self, texts: list[str]) -> list[tuple[str, Stats]]:
        """The batcher's batch function: each summary with its batch's stats (one dict per batch)."""
        outs, st = self._generate_batch(texts)
        return [(o, st) for o in outs]

    def submit(self, texts: list[str]) -> cf.Future:
        """Queue `texts` for the micro-batcher; the future's result is (summaries, stats).

        The stats add up the batches that held any of `texts`. Cancelling the future drops the texts
        that have not been generated yet.
        """
        if self._closed:
            raise ServingError("summarizer is closed")
        fut: cf.Future = cf.Future()
        if not texts:
            fut.set_result(([], _rate(0, 0.0)))
            return fut
        try:
            inner = self._batcher.submit(texts)
        except BatcherClosed:
            raise ServingError("summarizer is closed") from None

        def finish(done: cf.Future) -> None:
            with contextlib.suppress(cf.InvalidStateError):
                if done.cancelled():
                    fut.cancel()
                    return
                exc = done.exception()
                if isinstance(exc, BatcherClosed):
                    fut.set_exception(ServingError("summarizer closed"))
                elif exc is not None:
                    fut.set_exception(exc)
                else:
                    pairs = done.result()
                    # a request's stats add up the batches it had sections in (in the order they ran)
                    batches = {id(st): st for _, st in pairs}.values()
                    tokens = sum((st["tokens"] for st in batches), 0.0)
                    seconds = sum((st["seconds"] for st in batches), 0.0)
                    fut.set_result(([o for o, _ in pairs], _rate(tokens, seconds)))

        fut.add_done_callback(lambda f: inner.cancel() if f.cancelled() else None)
        inner.add_done_callback(finish)
        return fut

    def record_request(self) -> None:
        with self._stats_lock:
            self.stats["requests"] += 1

    def queue_size(self) -> int:
        return self._batcher.queue_size()

    def close(self) -> None:
        self._closed = True
        self._batcher.close(timeout=5)

    def __enter__(self) -> Summarizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- documents

    def summarize_document(
        self, text: str, doc_id: str = "doc", timeout: float | None = None
    ) -> tuple[list[dict[str, Any]], Stats]:
        """(one row per section: heading_path, part, n_parts, summary, char_start, char_end; stats).

        Goes through the micro-batcher, so calls from several threads share batches. Raises
        `TimeoutError` after `timeout` seconds (the request's remaining sections are dropped).
        """
        sections = self.chunk(text, doc_id)
        fut = self.submit([s.text for s in sections])
        try:
            outs, stats = fut.result(timeout=timeout)
        except cf.TimeoutError:
            fut.cancel()
            raise TimeoutError(f"{doc_id}: not summarized within {timeout:g}s") from None
        self.record_request()
        return [section_row(s, o) for s, o in zip(sections, outs, strict=True)], stats
