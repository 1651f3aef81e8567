"""Serving the promoted student: resolve the model, load it once, summarize documents section by section.

Pure Python (no Dagster): the CLI (`summ-assets summarize`, `summ-assets serve`), the HTTP app
(`summ_assets.server`) and the benchmark all go through `Summarizer`.

- `resolve_model_path(explicit)`: the `--model` folder, else the folder that
  ``<artifacts>/promoted_student/current.json`` points at (artifacts root = ``$SUMM_ARTIFACTS`` or
  ``./artifacts``), else a `ServingError` that says to run ``make demo`` or pass ``--model``.
- `Summarizer(path)`: model + tokenizer loaded once; documents are chunked exactly like the graph chunks
  them (`split_markdown` with the model's tokenizer and the profile's section budget), and summarized
  with the shared prompt (`summarize_texts`, the profile's ``eval.max_new_tokens``, greedy unless the
  model's generation config says otherwise).
- Concurrency: `submit()` hands sections to one background worker (a micro-batcher). It waits up to
  `batch_window_s` (20 ms) for other requests, then generates batches of at most ``eval.batch_size``
  sections, taking sections round-robin from every waiting request, so concurrent HTTP requests share
  batches and one long document does not starve short ones. `generate()` (the CLI path) and the worker
  both hold one lock around `model.generate`.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import json
import logging
import queue
import re
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from summ_assets.core.artifacts import artifacts_root
from summ_assets.core.chunking import Section, TokenCounter, split_markdown
from summ_assets.core.documents import DocumentError
from summ_assets.core.profiles import Profile, get_profile

log = logging.getLogger(__name__)

QUANTIZE_CHOICES = ("int8", "8bit", "4bit")
POINTER = ("promoted_student", "current.json")


class ServingError(RuntimeError):
    """The model cannot be found, loaded or quantized as asked; the message says what to do."""


# ---------------------------------------------------------------------------------------------- model


def promoted_pointer() -> Path:
    return artifacts_root().joinpath(*POINTER)


def _check_model_folder(path: Path, origin: str) -> Path:
    if not path.exists():
        raise ServingError(f"{origin}: {path} does not exist")
    if not path.is_dir():
        raise ServingError(f"{origin}: {path} is not a folder (expected a save_pretrained model folder)")
    if not (path / "config.json").is_file():
        raise ServingError(f"{origin}: {path} has no config.json; it is not a Hugging Face model folder")
    return path.resolve()


def resolve_model_path(explicit: str | Path | None) -> Path:
    """The model folder to serve: `explicit` if given, else the promoted student."""
    if explicit:
        return _check_model_folder(Path(explicit).expanduser(), "--model")
    pointer = promoted_pointer()
    hint = "run `make demo` (trains, evaluates and promotes a student) or pass --model PATH"
    if not pointer.is_file():
        raise ServingError(f"no promoted student: {pointer} does not exist; {hint}")
    try:
        current = json.loads(pointer.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ServingError(f"{pointer}: unreadable ({exc}); {hint}") from exc
    path = current.get("path") if isinstance(current, dict) else None
    if not path:
        raise ServingError(
            f"{pointer}: no student has passed the promotion gates yet (path is empty); see "
            f"`summ-assets report`, or pass --model PATH"
        )
    return _check_model_folder(Path(path), str(pointer))


def promoted_info() -> dict[str, Any]:
    """current.json of the promoted student, or {} (never raises)."""
    try:
        data = json.loads(promoted_pointer().read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


_CARD_BLOCK = re.compile(r"^## ([^\n]+)\n```json\n(.*?)\n```", re.M | re.S)


def model_card(path: Path) -> dict[str, Any]:
    """Lineage, config and metrics of a model folder, from its README.md card and training_metrics.json."""
    path = Path(path)
    out: dict[str, Any] = {"path": str(path)}
    readme = path / "README.md"
    if readme.is_file():
        text = readme.read_text(encoding="utf-8", errors="replace")
        title = re.search(r"^# (.+)$", text, re.M)
        if title:
            out["title"] = title.group(1).strip()
        for name, body in _CARD_BLOCK.findall(text):
            with contextlib.suppress(ValueError):
                out[name.strip().lower()] = json.loads(body)
    metrics_file = path / "training_metrics.json"
    if metrics_file.is_file():
        with contextlib.suppress(OSError, ValueError):
            metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
            if isinstance(metrics, dict):
                # the loss curves are long lists; the scalars are what a caller wants
                scalars = {
                    k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool)) or v is None
                }
                out["metrics"] = {**out.get("metrics", {}), **scalars}
    promoted = promoted_info()
    if promoted.get("path") and Path(promoted["path"]).resolve() == path.resolve():
        out["promoted"] = {"version": promoted.get("version"), "report": promoted.get("report")}
    return out


# ------------------------------------------------------------------------------------------- input


def decode_document(data: bytes, source: str, max_bytes: int | None = None) -> str:
    """Validate and decode one document's bytes like `core.documents.read_document` does.

    Raises `DocumentError` naming `source` (too big, empty, binary, invalid UTF-8 with line:col, blank).
    """
    if max_bytes is not None and len(data) > max_bytes:
        raise DocumentError(f"{source}: {len(data):,} bytes exceeds the size limit of {max_bytes:,} bytes")
    if not data:
        raise DocumentError(f"{source}: empty (no bytes); send the document's text")
    text = decode_utf8(data, source)
    if not text.strip():
        raise DocumentError(f"{source}: has no text (only whitespace)")
    return text


def decode_utf8(data: bytes, source: str) -> str:
    """UTF-8 text of `data` (BOM dropped); DocumentError naming `source` and line:col when it is not."""
    if b"\x00" in data[:8192]:
        raise DocumentError(f"{source}: looks binary (NUL bytes); only UTF-8 Markdown/text is supported")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DocumentError(
            f"{source}:{line}:{col}: invalid UTF-8 (byte 0x{data[exc.start]:02x}); re-save the file as UTF-8"
        ) from exc


def read_input_file(path: str | Path, max_bytes: int) -> str:
    """Read a document named on the command line; every failure is a DocumentError naming the file."""
    p = Path(path)
    if not p.exists():
        raise DocumentError(f"{p}: no such file")
    if not p.is_file():
        raise DocumentError(f"{p}: not a regular file")
    size = p.stat().st_size
    if size > max_bytes:
        raise DocumentError(f"{p}: {size:,} bytes exceeds the size limit of {max_bytes:,} bytes")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise DocumentError(f"{p}: cannot be read ({exc.strerror or exc})") from exc
    return decode_document(data, str(p), max_bytes)


# ------------------------------------------------------------------------------------- summarizer


@dataclass
class _Job:
    texts: list[str]
    future: cf.Future
    results: list[str | None] = field(default_factory=list)
    next: int = 0
    done: int = 0
    tokens: float = 0.0
    seconds: float = 0.0

    def __post_init__(self) -> None:
        self.results = [None] * len(self.texts)


def section_row(sec: Section, summary: str) -> dict[str, Any]:
    return {
        "heading_path": sec.heading_path,
        "part": sec.part,
        "n_parts": sec.n_parts,
        "summary": summary,
        "char_start": sec.char_start,
        "char_end": sec.char_end,
    }


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
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from summ_assets.core.lm import set_threads
        from summ_assets.core.models import count_parameters, resolve_device, torch_dtype

        self.profile = profile or get_profile()
        self.path = _check_model_folder(Path(model_path), "model")
        if quantize is not None and quantize not in QUANTIZE_CHOICES:
            raise ServingError(f"--quantize {quantize!r}: choose one of {', '.join(QUANTIZE_CHOICES)}")
        self.quantize = quantize
        self.device = resolve_device(device or self.profile.device)
        dtype = dtype or self.profile.dtype
        if self.device == "cpu" and dtype != "float32":
            dtype = "float32"  # half precision on CPU is slower and less accurate than fp32
        if self.device == "cpu":
            set_threads(threads or self.profile.threads)
        self.max_new_tokens = max_new_tokens or self.profile.eval.max_new_tokens
        self.batch_size = max(1, batch_size or self.profile.eval.batch_size)
        self.max_prompt_tokens = self.profile.data.max_prompt_tokens
        self.batch_window_s = batch_window_s

        kwargs: dict[str, Any] = {"dtype": torch_dtype(dtype)}
        if quantize in ("8bit", "4bit"):
            if self.device != "cuda":
                raise ServingError(
                    f"--quantize {quantize} uses bitsandbytes and needs a CUDA GPU (none here); "
                    "on CPU use --quantize int8"
                )
            try:
                import bitsandbytes  # noqa: F401
            except ImportError as exc:
                raise ServingError(
                    f"--quantize {quantize} needs the bitsandbytes package: pip install bitsandbytes"
                ) from exc
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = (
                BitsAndBytesConfig(load_in_8bit=True)
                if quantize == "8bit"
                else BitsAndBytesConfig(
                    load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch_dtype(dtype)
                )
            )
            kwargs["device_map"] = {"": 0}
        elif quantize == "int8" and self.device != "cpu":
            raise ServingError(
                "--quantize int8 (dynamic quantization) runs on CPU only; on CUDA use 8bit or 4bit"
            )
        elif self.device == "cuda":
            kwargs["device_map"] = {"": 0}

        t0 = time.time()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path)
            # a second instance for chunking: the generation tokenizer is switched to left padding and
            # padded batches while generating; the Rust tokenizer must not be shared across threads then
            self._chunk_tokenizer = AutoTokenizer.from_pretrained(self.path)
            model = AutoModelForCausalLM.from_pretrained(self.path, **kwargs)
        except Exception as exc:  # noqa: BLE001 - surfaced as one clear error
            raise ServingError(
                f"cannot load the model from {self.path}: {type(exc).__name__}: {exc}"
            ) from exc
        if "gemma" in getattr(model.config, "model_type", ""):
            model.config._attn_implementation = "eager"  # same numerics as the evaluation that promoted it
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.parameters = count_parameters(model)
        if quantize == "int8":
            with warnings.catch_warnings():  # torch's notice that quantized tensors are deprecated
                warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
                model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        model.eval()
        self.model = model
        self.dtype = dtype
        gen = model.generation_config
        self.do_sample = bool(getattr(gen, "do_sample", False))
        self.load_seconds = time.time() - t0
        self.counter = TokenCounter(self._chunk_tokenizer)

        self._gen_lock = threading.Lock()
        self._chunk_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._closed = False
        self._worker: threading.Thread | None = None
        self._worker_lock = threading.Lock()
        self.stats = {"requests": 0, "sections": 0, "batches": 0, "max_batch": 0, "tokens": 0, "seconds": 0.0}
        log.info(
            "loaded %s on %s (%s%s) in %.1fs",
            self.path,
            self.device,
            dtype,
            f", {quantize}" if quantize else "",
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

    def _generate_batch(self, texts: list[str]) -> tuple[list[str], dict[str, float]]:
        from summ_assets.core.generation import summarize_texts

        with self._gen_lock:
            outs, st = summarize_texts(
                self.model,
                self.tokenizer,
                texts,
                max_prompt_tokens=self.max_prompt_tokens,
                max_new_tokens=self.max_new_tokens,
                batch_size=len(texts),
                do_sample=self.do_sample,
            )
            self.stats["batches"] += 1
            self.stats["sections"] += len(texts)
            self.stats["max_batch"] = max(self.stats["max_batch"], len(texts))
            self.stats["tokens"] += int(st["tokens"])
            self.stats["seconds"] += float(st["seconds"])
        return outs, st

    def generate(
        self, texts: list[str], progress: Callable[[int], None] | None = None
    ) -> tuple[list[str], dict[str, float]]:
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
        return results, {
            "tokens": tokens,
            "seconds": seconds,
            "tokens_per_s": tokens / seconds if seconds else 0.0,
        }

    # ---- micro-batched path (HTTP)

    def submit(self, texts: list[str]) -> cf.Future:
        """Queue `texts` for the micro-batcher; the future's result is (summaries, stats).

        Cancelling the future drops the texts that have not been generated yet.
        """
        if self._closed:
            raise ServingError("summarizer is closed")
        fut: cf.Future = cf.Future()
        if not texts:
            fut.set_result(([], {"tokens": 0, "seconds": 0.0, "tokens_per_s": 0.0}))
            return fut
        self._ensure_worker()
        self._queue.put(_Job(list(texts), fut))
        return fut

    def _ensure_worker(self) -> None:
        with self._worker_lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._run, name="summ-batcher", daemon=True)
                self._worker.start()

    def _run(self) -> None:
        active: list[_Job] = []
        while True:
            if not active:
                job = self._queue.get()
                if job is None:
                    return
                active.append(job)
                # the micro-batching window: wait a little for requests arriving together
                deadline = time.monotonic() + self.batch_window_s
                while sum(len(j.texts) - j.next for j in active) < self.batch_size:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        job = self._queue.get(timeout=remaining)
                    except queue.Empty:
                        break
                    if job is None:
                        self._fail(active, ServingError("summarizer closed"))
                        return
                    active.append(job)
            else:  # busy: take whatever arrived meanwhile, without waiting
                while True:
                    try:
                        job = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        self._fail(active, ServingError("summarizer closed"))
                        return
                    active.append(job)
            active = [j for j in active if not j.future.cancelled()]
            if not active:
                continue
            # round-robin over the waiting requests, at most batch_size sections
            picks: list[tuple[_Job, int]] = []
            while len(picks) < self.batch_size:
                took = False
                for j in active:
                    if j.next < len(j.texts) and len(picks) < self.batch_size:
                        picks.append((j, j.next))
                        j.next += 1
                        took = True
                if not took:
                    break
            try:
                outs, st = self._generate_batch([j.texts[i] for j, i in picks])
            except Exception as exc:  # noqa: BLE001 - every waiting request gets the error
                self._fail({id(j): j for j, _ in picks}.values(), exc)
                active = [j for j in active if not any(j is p for p, _ in picks)]
                continue
            for (j, i), out in zip(picks, outs, strict=True):
                j.results[i] = out
                j.done += 1
            for j in {id(j): j for j, _ in picks}.values():
                j.tokens += st["tokens"]
                j.seconds += st["seconds"]
            finished = [j for j in active if j.done == len(j.texts)]
            for j in finished:
                stats = {
                    "tokens": j.tokens,
                    "seconds": j.seconds,
                    "tokens_per_s": j.tokens / j.seconds if j.seconds else 0.0,
                }
                with contextlib.suppress(cf.InvalidStateError):
                    j.future.set_result((list(j.results), stats))
            active = [j for j in active if j.done < len(j.texts)]

    @staticmethod
    def _fail(jobs: Any, exc: BaseException) -> None:
        for j in jobs:
            with contextlib.suppress(cf.InvalidStateError):
                j.future.set_exception(exc)

    def record_request(self) -> None:
        with self._stats_lock:
            self.stats["requests"] += 1

    def queue_size(self) -> int:
        return self._queue.qsize()

    def close(self) -> None:
        self._closed = True
        if self._worker is not None and self._worker.is_alive():
            self._queue.put(None)
            self._worker.join(timeout=5)

    def __enter__(self) -> Summarizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- documents

    def summarize_document(
        self, text: str, doc_id: str = "doc", timeout: float | None = None
    ) -> tuple[list[dict[str, Any]], dict[str, float]]:
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
