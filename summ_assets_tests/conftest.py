"""Shared fixtures: offline env, a small copy of the bundled corpus, a tiny-profile Dagster setup."""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import pytest

from summ_assets.core.offline import use_offline_env

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "data"

os.environ["HF_HUB_OFFLINE"] = "1"  # forced, not defaulted: tests must never reach a hub
os.environ["TRANSFORMERS_OFFLINE"] = "1"
use_offline_env()

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


@pytest.fixture
def small_corpus(tmp_path: Path) -> Path:
    return copy_corpus(tmp_path / "data")


class NetworkBlocked(RuntimeError):
    pass


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch):
    """Any connection to a non-loopback address raises: proves no model hub is contacted."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else str(address)
        if isinstance(host, str) and (
            host.startswith("127.") or host in ("localhost", "::1") or host.startswith("/")
        ):
            return real_connect(self, address)
        raise NetworkBlocked(f"test tried to reach {address}")

    monkeypatch.setattr(socket.socket, "connect", guarded)
    yield


def ingest_partition(instance, resources: dict, partition: str, raise_on_error: bool = True):
    """Materialize one document partition (raw_documents + document_sections) of the shipped graph."""
    import dagster as dg

    from summ_assets.definitions import ASSETS

    return dg.materialize(
        ASSETS,
        selection=[a for a in ASSETS if a.key.to_user_string() in ("raw_documents", "document_sections")],
        partition_key=partition,
        instance=instance,
        resources=resources,
        raise_on_error=raise_on_error,
    )


@pytest.fixture(autouse=True)
def no_leaked_dagster_instance():
    """A Dagster instance opened by a context (e.g. a sensor context built from an instance ref) and
    never closed stays registered as the process's defs-state storage; every later `materialize` in
    the process then fails with 'Attempted to resolve undefined DagsterInstance weakref'. Fail the
    test that leaks it instead of the ones that come after."""
    yield
    from dagster._core.storage.defs_state.base import DefsStateStorage

    assert DefsStateStorage.get() is None, "this test left a Dagster instance open (use `with` on contexts)"
