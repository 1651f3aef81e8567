"""Helpers several test modules share (plain functions and constants; fixtures live in conftest.py).
No test module imports from another test module: what two of them need lives here."""

from __future__ import annotations

import functools
import json
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "data"


def bundled_documents() -> list[Path]:
    """The bundled documents the pipeline ingests (data/raw, data/eval/similar, data/eval/new; not
    data/SOURCES.md or the labels), as `core.documents.discover` finds them."""
    from summ_assets.core.documents import discover

    return sorted(BUNDLED / doc_id for doc_id in discover(BUNDLED).values())


@functools.cache
def _tmp() -> Path:
    """One scratch folder per test process for the tiny tokenizer and models (made on first use)."""
    return Path(tempfile.mkdtemp(prefix="summ-tok-"))


# --- network ------------------------------------------------------------------------------------------


class NetworkBlocked(RuntimeError):
    """A test tried to reach an address off this machine (a model hub, say)."""


def _local(address: Any) -> bool:
    host = address[0] if isinstance(address, tuple) else str(address)
    return isinstance(host, str) and (
        host.startswith("127.") or host in ("localhost", "::1") or host.startswith("/")
    )


@contextmanager
def network_blocked() -> Iterator[None]:
    """Inside: any connection to a non-loopback address raises `NetworkBlocked` (proves no model hub is
    contacted); loopback and Unix sockets (Dagster's own) still work. The one network guard of the suite."""
    real: Callable = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        if _local(address):
            return real(self, address)
        raise NetworkBlocked(f"test tried to reach {address}")

    socket.socket.connect = guarded  # type: ignore[method-assign]
    try:
        yield
    finally:
        socket.socket.connect = real  # type: ignore[method-assign]


# --- a small copy of the bundled corpus ------------------------------------------------------------------

FIXTURE_DOCS = [
    "raw/ko-rag-pipeline.md",
    "raw/ko-lora-finetuning.md",
    "raw/ko-knowledge-distillation.md",
    "raw/ko-git-branching.md",
    "raw/ko-docker-basics.md",
    "raw/en-feature-flags.md",
    "eval/similar/ko-feature-store.md",
    "eval/new/ko-meeting-minutes.md",
]


def copy_corpus(dest: Path, docs: list[str] = FIXTURE_DOCS) -> Path:
    """A data folder with `docs` and only their label lines (data/ itself is never written)."""
    for d in docs:
        (dest / d).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(BUNDLED / d, dest / d)
    (dest / "labels").mkdir(parents=True, exist_ok=True)
    keep = set(docs)
    lines = []
    for f in sorted((BUNDLED / "labels").glob("*.jsonl")):
        for line in f.read_text(encoding="utf-8").splitlines():
            if line.strip() and json.loads(line)["doc"] in keep:
                lines.append(line)
    (dest / "labels" / "labels.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dest


# --- tiny tokenizer and models -------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def tiny_tokenizer() -> Any:
    from summ_assets.core.models import train_tiny_tokenizer

    texts = [p.read_text(encoding="utf-8") for p in sorted((BUNDLED / "raw").glob("*.md"))[:12]]
    return train_tiny_tokenizer(texts, _tmp() / "tok")


@functools.lru_cache(maxsize=1)
def tiny_models() -> tuple[Path, Path]:
    from summ_assets.core.models import build_tiny_model

    tiny_tokenizer()
    build_tiny_model("teacher", _tmp() / "tok", _tmp() / "teacher")
    build_tiny_model("student", _tmp() / "tok", _tmp() / "student")
    return _tmp() / "teacher", _tmp() / "student"


def examples(tok_dir: Path, rows: list[dict]) -> list[dict]:
    """Training examples of `rows` with the tokenizer in `tok_dir` (64 prompt / 16 summary tokens)."""
    from transformers import AutoTokenizer

    from summ_assets.core.examples import build_examples

    return build_examples(rows, AutoTokenizer.from_pretrained(tok_dir), 64, 16)


# --- a synthetic dataset and teacher-logit cache --------------------------------------------------------

N_EXAMPLES = 14


def dataset_rows(n: int = N_EXAMPLES) -> list[dict]:
    topics = ["검색 단계", "색인 구조", "배포 절차", "로그 수집", "권한 관리", "캐시 정책", "모델 평가"]
    return [
        {
            "section_id": f"doc-{i // 3}#s{i}",
            "text": f"{topics[i % len(topics)]}에 대한 설명이다. 항목 {i}은 세부 사항을 다룬다. "
            * (1 + i % 3),
            "summary": f"{topics[i % len(topics)]}의 요점 {i}을 정리한다.",
        }
        for i in range(n)
    ]


def write_dataset(folder: Path, n: int = N_EXAMPLES) -> str:
    """A `summary_dataset` folder (train/val Parquet) of synthetic labelled sections."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    rows = dataset_rows(n + 4)
    pq.write_table(pa.Table.from_pylist(rows[:n]), folder / "train.parquet")
    pq.write_table(pa.Table.from_pylist(rows[n:]), folder / "val.parquet")
    return str(folder)


def cache_spec(teacher: str = "teach") -> Any:
    from summ_assets.core import logits_cache as lc

    return lc.CacheSpec(
        mode="topk",
        k=8,
        n_samples=16,
        teacher_fingerprint=teacher,
        tokenizer_hash="tok",
        chat_template_hash="tpl",
    )


def tiny_cache_rows(n: int = N_EXAMPLES, batch_size: int = 1) -> list[dict]:
    """Teacher rows of the tiny teacher for the first `n` dataset examples (batch 1: the values do not
    depend on how examples are batched)."""
    import torch
    from transformers import AutoModelForCausalLM

    from summ_assets.core import logits_cache as lc
    from summ_assets.core.examples import build_examples

    t_dir, _ = tiny_models()
    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(t_dir, dtype=torch.float32)
    built = build_examples(dataset_rows(n), tiny_tokenizer(), 64, 16)
    return lc.capture(model, built, cache_spec(), pad_id=0, batch_size=batch_size)


# --- a tiny-profile Dagster setup -----------------------------------------------------------------------


def graph_resources(data: Path, art: Path) -> dict:
    """The resources of a tiny-profile graph over `data`, artifacts in `art` (CPU, one thread)."""
    import dagster as dg

    from summ_assets.defs.resources import ComputeResource, SummSettings

    return {
        "settings": SummSettings(profile="tiny", data_dir=str(data), artifacts_dir=str(art)),
        "compute": ComputeResource(device="cpu", threads=1),
        "io_manager": dg.FilesystemIOManager(base_dir=str(art / "_dagster_io")),
    }


def ingest_partition(instance: Any, resources: dict, partition: str, raise_on_error: bool = True) -> Any:
    """Materialize one document partition (raw_documents, document_sections, document_changes) of the
    shipped graph, as `summ-assets refresh` does."""
    import dagster as dg

    from summ_assets.definitions import ASSETS

    return dg.materialize(
        ASSETS,
        selection=[
            a
            for a in ASSETS
            if a.key.to_user_string() in ("raw_documents", "document_sections", "document_changes")
        ],
        partition_key=partition,
        instance=instance,
        resources=resources,
        raise_on_error=raise_on_error,
    )
