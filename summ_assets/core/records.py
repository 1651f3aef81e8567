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


class LogitCacheRef(TypedDict):
    """`teacher_logits`: a folder of Parquet shards and the capture spec they share."""

    path: str
    spec: dict[str, Any]
    version: str


class PseudoSummariesRef(TypedDict):
    """`teacher_pseudo_summaries`: teacher summaries of unlabelled sections + their cached log-probs."""

    path: str
    n: int
    version: str
    spec: dict[str, Any] | None


class StudentRef(TypedDict):
    """`student_model` / `student_baseline`: a trained student folder."""

    path: str
    version: str
    alpha: float


class ReportRef(TypedDict):
    """`evaluation_report`: the report folder and its parsed report.json."""

    path: str
    report: dict[str, Any]
