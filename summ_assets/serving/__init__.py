"""Serving the promoted student: resolve the model, load it once, summarize documents section by section.

Pure Python over `summ_assets.core` (no Dagster; torch and transformers load only with a model):

- `loader`: which folder to serve (`resolve_model_path`: ``--model`` or the promoted student), loading
  and quantizing it (`load_model`), its card (`model_card`), `ServingError`.
- `inputs`: documents from files and HTTP bodies checked and decoded (`read_input_file`, `decode_utf8`).
- `batcher`: `MicroBatcher`, a generic background worker that batches items across requests.
- `summarizer`: `Summarizer`, the facade the CLI, the HTTP app and the benchmark use.
- `http`: the FastAPI app (`create_app`, `serve`, `BackgroundServer`); imported on first use of one of
  its names here, so the CLI's ``summarize`` does not load FastAPI.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from summ_assets.serving.batcher import BatcherClosed, MicroBatcher
from summ_assets.serving.inputs import decode_document, decode_utf8, read_input_file
from summ_assets.serving.loader import (
    POINTER,
    QUANTIZE_CHOICES,
    LoadedModel,
    ServingError,
    load_model,
    model_card,
    promoted_info,
    promoted_pointer,
    resolve_model_path,
)
from summ_assets.serving.summarizer import Summarizer, section_row

if TYPE_CHECKING:
    from summ_assets.serving.http import (
        DEFAULT_MAX_BYTES,
        DEFAULT_TIMEOUT_S,
        BackgroundServer,
        create_app,
        serve,
    )

_HTTP_NAMES = ("DEFAULT_MAX_BYTES", "DEFAULT_TIMEOUT_S", "BackgroundServer", "create_app", "serve")

__all__ = [
    "POINTER",
    "QUANTIZE_CHOICES",
    "BatcherClosed",
    "LoadedModel",
    "MicroBatcher",
    "ServingError",
    "Summarizer",
    "decode_document",
    "decode_utf8",
    "load_model",
    "model_card",
    "promoted_info",
    "promoted_pointer",
    "read_input_file",
    "resolve_model_path",
    "section_row",
    # summ_assets.serving.http, loaded on first use (see __getattr__)
    "DEFAULT_MAX_BYTES",
    "DEFAULT_TIMEOUT_S",
    "BackgroundServer",
    "create_app",
    "serve",
]


def __getattr__(name: str) -> Any:
    if name in _HTTP_NAMES:
        value = getattr(importlib.import_module("summ_assets.serving.http"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
