"""HTTP API over a loaded `Summarizer` (FastAPI; `summ-assets serve` runs it with uvicorn on 127.0.0.1).

Endpoints:
- ``POST /summarize``: the body is the document itself (text/markdown, text/plain, anything not JSON)
  or JSON ``{"text": "...", "doc_id": "..."}``. Answers ``{"doc_id", "sections": [{heading_path, part,
  n_parts, summary, char_start, char_end}], "n_sections", "model", "tokens_per_s", "tokens", "seconds"}``.
  413 over `max_bytes`; 400 for an empty body, invalid UTF-8, binary data or malformed JSON; 422 for a
  JSON body without a string ``text``, text that is only whitespace, or broken front matter; 503 with
  ``Retry-After`` when the queue is full (`serving.admission`: a bound in sections, and the estimated
  wait against half the timeout), at once; 504 when the summary is not ready within `timeout_s` (its
  pending sections are dropped).
- ``POST /compare``: JSON ``{"old": "...", "new": "..."}``, two versions of one document. Answers
  `summ_assets.serving.compare`'s JSON (aligned sections, what changed, both summaries of every changed
  section, cached under ``<artifacts>/summary_cache`` or ``app.state.summary_cache``). The same body
  limit, errors, admission control and timeout as ``/summarize``; its summaries go through the same
  micro-batcher.
- ``GET /health``: liveness, queue depth and admission counts (no lock held by generation).
- ``POST /reload``: load the model again from its source (the promoted student's pointer, or the
  --model folder) beside the one serving, and switch when it is ready (`serving.reload`); answers 202
  at once. A request in flight finishes on the model it started with. ``GET /model``: the served folder, its lineage, config and
  training metrics (from the folder's card.json model card and training_metrics.json), serving settings;
  ``card_error`` says why the lineage is missing for a folder without card.json.

Every error is ``{"error": message}``; a client never sees a stack trace (the server log does).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from summ_assets.core.chunking import FrontMatterError
from summ_assets.core.documents import DocumentError
from summ_assets.serving.admission import Admission
from summ_assets.serving.inputs import decode_utf8
from summ_assets.serving.loader import model_card
from summ_assets.serving.reload import ModelSlot
from summ_assets.serving.summarizer import Summarizer, section_row

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 1_000_000
DEFAULT_TIMEOUT_S = 120.0
DEFAULT_MAX_QUEUE_SECTIONS = 256
MAX_DOC_ID = 200


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _read_body(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(
            413, f"request body of {int(declared):,} bytes exceeds the limit of {max_bytes:,} bytes"
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise ApiError(413, f"request body exceeds the limit of {max_bytes:,} bytes")
    return bytes(body)


def _parse(body: bytes, content_type: str) -> tuple[str, str]:
    """(text, doc_id) of a request body; ApiError with a clear message otherwise."""
    if not body:
        raise ApiError(
            400, 'empty body: send the document as text/markdown, or JSON {"text": "...", "doc_id": "..."}'
        )
    try:
        raw = decode_utf8(body, "request body")
    except DocumentError as exc:
        raise ApiError(400, str(exc)) from None
    mime = content_type.split(";", 1)[0].strip().lower()
    doc_id = "request"
    if mime == "application/json" or mime.endswith("+json"):
        try:
            payload = json.loads(raw)
        except ValueError as exc:
            raise ApiError(400, f"request body is not valid JSON: {exc}") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("text"), str):
            raise ApiError(
                422, 'JSON body must be an object with a string field "text" (and optional "doc_id")'
            )
        text = payload["text"]
        if payload.get("doc_id") is not None:
            if not isinstance(payload["doc_id"], str) or len(payload["doc_id"]) > MAX_DOC_ID:
                raise ApiError(422, f'"doc_id" must be a string of at most {MAX_DOC_ID} characters')
            doc_id = payload["doc_id"] or doc_id
    else:
        text = raw
    if not text.strip():
        raise ApiError(422, "text is empty (only whitespace): nothing to summarize")
    return text, doc_id


def create_app(
    summarizer: Summarizer,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_queue_sections: int = DEFAULT_MAX_QUEUE_SECTIONS,
    reloader: Callable[[], Summarizer] | None = None,
) -> FastAPI:
    """The API over `summarizer`; `reloader` loads its replacement for ``POST /reload`` (None: the
    endpoint answers 409)."""
    app = FastAPI(
        title="summ-assets summarizer",
        description="Section-by-section summaries of Markdown documents by the distilled student.",
        version="1",
    )
    slot = ModelSlot(summarizer)
    app.state.slot = slot
    started = time.time()

    def seconds_per_section() -> float | None:
        st = slot.current.stats
        return st["seconds"] / st["sections"] if st["sections"] else None

    admission = Admission(max_queue_sections, timeout_s / 2, seconds_per_section)
    app.state.admission = admission

    def admit(sections: int) -> None:
        refusal = admission.try_admit(sections)
        if refusal is not None:
            raise ApiError(
                503,
                f"{refusal.reason}; retry in {refusal.retry_after_s}s",
                {"Retry-After": str(refusal.retry_after_s)},
            )

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, f"invalid request: {exc.errors()}")

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error(500, f"internal error ({type(exc).__name__}); see the server log")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        summarizer = slot.current
        return {
            "status": "ok",
            "model": str(summarizer.path),
            "queue": summarizer.queue_size(),
            **admission.snapshot(),
            **slot.status(),
            "uptime_s": round(time.time() - started, 1),
            **{k: v for k, v in summarizer.stats.items() if k in ("requests", "sections")},
        }

    @app.get("/model")
    async def model() -> dict[str, Any]:
        summarizer = slot.current
        return {
            **model_card(summarizer.path),
            "serving": {
                **summarizer.info(),
                "max_bytes": max_bytes,
                "timeout_s": timeout_s,
                "max_queue_sections": max_queue_sections,
            },
        }

    @app.post("/reload", status_code=202)
    async def reload() -> dict[str, Any]:
        if reloader is None:
            raise ApiError(409, "this server has no model source to reload from")
        started_now = slot.reload(reloader)
        return {"reloading": True, "started": started_now, "serving": str(slot.current.path)}

    async def _generate(summarizer: Summarizer, texts: list[str]) -> tuple[list[str], dict[str, float]]:
        """Summaries of `texts` through the micro-batcher, behind admission control (503 at once when
        the queue is full); cancelling this (a timeout) cancels the pending sections."""
        admit(len(texts))
        try:
            return await asyncio.wrap_future(summarizer.submit(texts))
        finally:
            admission.release(len(texts))

    async def _on_model(work: Callable[[Summarizer], Any], what: str, hint: str) -> Any:
        """`work(summarizer)` on the current model (kept across a reload until it ends), within the
        timeout (504), with bad documents as 422; counts the request."""
        with slot.use() as summarizer:
            try:
                result = await asyncio.wait_for(work(summarizer), timeout_s)
            except asyncio.TimeoutError:
                raise ApiError(504, f"{what} not ready within {timeout_s:g}s; {hint}") from None
            except (FrontMatterError, DocumentError) as exc:
                raise ApiError(422, str(exc)) from None
            summarizer.record_request()
            return summarizer, result

    async def _summarize(
        summarizer: Summarizer, text: str, doc_id: str
    ) -> tuple[list[Any], dict[str, float]]:
        sections = await run_in_threadpool(summarizer.chunk, text, doc_id)
        outs, stats = await _generate(summarizer, [s.text for s in sections])
        return list(zip(sections, outs, strict=True)), stats

    @app.post("/summarize")
    async def summarize(request: Request) -> JSONResponse:
        t0 = time.perf_counter()
        body = await _read_body(request, max_bytes)
        text, doc_id = _parse(body, request.headers.get("content-type", ""))
        summarizer, (pairs, stats) = await _on_model(
            lambda m: _summarize(m, text, doc_id), "summary", "try a shorter document"
        )
        return JSONResponse(
            {
                "doc_id": doc_id,
                "sections": [section_row(s, out) for s, out in pairs],
                "n_sections": len(pairs),
                "model": str(summarizer.path),
                "tokens_per_s": round(stats["tokens_per_s"], 2),
                "tokens": int(stats["tokens"]),
                "seconds": round(time.perf_counter() - t0, 4),
            }
        )

    def _parse_compare(body: bytes) -> tuple[str, str]:
        if not body:
            raise ApiError(400, 'empty body: send JSON {"old": "...", "new": "..."}')
        try:
            payload = json.loads(decode_utf8(body, "request body"))
        except DocumentError as exc:
            raise ApiError(400, str(exc)) from None
        except ValueError as exc:
            raise ApiError(400, f"request body is not valid JSON: {exc}") from None
        if not isinstance(payload, dict) or not all(isinstance(payload.get(k), str) for k in ("old", "new")):
            raise ApiError(422, 'JSON body must be an object with string fields "old" and "new"')
        for k in ("old", "new"):
            if not payload[k].strip():
                raise ApiError(422, f'"{k}" is empty (only whitespace): nothing to compare')
        return payload["old"], payload["new"]

    async def _compare(summarizer: Summarizer, old: str, new: str) -> dict[str, Any]:
        from summ_assets.serving.compare import SummaryCache, default_cache_dir, plan_comparison

        cache = getattr(app.state, "summary_cache", None) or SummaryCache(default_cache_dir())
        plan = await run_in_threadpool(plan_comparison, old, new, summarizer, cache)
        texts = plan.missing_texts()
        if texts:
            outs, _ = await _generate(summarizer, texts)
            await run_in_threadpool(plan.fill, outs)
        return await run_in_threadpool(plan.to_json)

    @app.post("/compare")
    async def compare(request: Request) -> JSONResponse:
        t0 = time.perf_counter()
        body = await _read_body(request, max_bytes)
        old, new = _parse_compare(body)
        _, result = await _on_model(lambda m: _compare(m, old, new), "comparison", "try shorter documents")
        return JSONResponse({**result, "seconds": round(time.perf_counter() - t0, 4)})

    return app


class BackgroundServer:
    """uvicorn serving `app` from a daemon thread (tests, benchmarks); loopback only by default.

    ``with BackgroundServer(app) as srv: httpx.get(srv.url + "/health")``; port 0 picks a free port.
    """

    def __init__(
        self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, startup_timeout_s: float = 30.0
    ) -> None:
        import socket

        import uvicorn

        if port == 0:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((host, 0))
                port = sock.getsockname()[1]
        self.host, self.port = host, port
        self.url = f"http://{host}:{port}"
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.startup_timeout_s = startup_timeout_s
        self._thread: threading.Thread | None = None

    def start(self) -> BackgroundServer:
        self._thread = threading.Thread(target=self.server.run, name="summ-uvicorn", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout_s
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"uvicorn did not start on {self.url} (port taken?)")
            if time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on {self.url} within {self.startup_timeout_s:g}s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    summarizer: Summarizer,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_queue_sections: int = DEFAULT_MAX_QUEUE_SECTIONS,
    reloader: Callable[[], Summarizer] | None = None,
    watch: tuple[Path, Callable[[str], Summarizer]] | None = None,
    watch_every_s: float = 10.0,
) -> None:
    """Serve with uvicorn. `watch` = (the promoted student's pointer file, a loader of a folder): the
    server switches to a newly promoted student by itself (`serving.reload.watch_pointer`)."""
    import uvicorn

    from summ_assets.serving.reload import watch_pointer

    app = create_app(
        summarizer,
        max_bytes=max_bytes,
        timeout_s=timeout_s,
        max_queue_sections=max_queue_sections,
        reloader=reloader,
    )
    stop = threading.Event()
    if watch is not None:
        watch_pointer(app.state.slot, watch[0], watch[1], watch_every_s, stop)
    try:
        uvicorn.run(app, host=host, port=port, log_level="info")
    finally:
        stop.set()
