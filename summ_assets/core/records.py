"""The small JSON records the model-half assets pass to each other (paths + versions, never weights).

Dagster stores each as the asset's output value (`FilesystemIOManager`); asset signatures keep
``dict`` (Dagster type-checks annotations), the stage bodies and helpers take these types.
"""

from __future__ import annotations

from typing import Any, TypedDict


class BaseModelRef(TypedDict, total=False):
    """`teacher_base` / `student_base`: a save_pretrained folder (+ how it was made)."""

    path: str
    source: str
    tokenizer_fingerprint: str
    kept_layers: list[int]
    base_layers: int
    parameters: int


class TeacherAdapterRef(TypedDict):
    """`teacher_adapter`: the LoRA adapter and the merged teacher beside it."""

    path: str
    merged: str
    adapter: str
    version: str


class PseudoSummariesRef(TypedDict):
    """`teacher_pseudo_summaries`: teacher summaries of unlabelled sections + their cached log-probs."""

    path: str
    n: int
    version: str
    spec: dict[str, Any] | None
