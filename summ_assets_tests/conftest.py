"""Shared fixtures: offline env, a small copy of the bundled corpus, the network guard, no leaked Dagster
instance. Plain helpers (no fixtures) live in summ_assets_tests/helpers.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from summ_assets.core.offline import use_offline_env
from summ_assets_tests.helpers import REPO, copy_corpus, network_blocked

__all__ = [
    "REPO"
]  # test_definitions.py still imports REPO from here; new code imports summ_assets_tests.helpers

os.environ["HF_HUB_OFFLINE"] = "1"  # forced, not defaulted: tests must never reach a hub
os.environ["TRANSFORMERS_OFFLINE"] = "1"
use_offline_env()


@pytest.fixture
def small_corpus(tmp_path: Path) -> Path:
    return copy_corpus(tmp_path / "data")


@pytest.fixture
def no_network():
    """Any connection to a non-loopback address raises: proves no model hub is contacted."""
    with network_blocked():
        yield


@pytest.fixture(autouse=True)
def no_leaked_dagster_instance():
    """A Dagster instance opened by a context (e.g. a sensor context built from an instance ref) and
    never closed stays registered as the process's defs-state storage; every later `materialize` in
    the process then fails with 'Attempted to resolve undefined DagsterInstance weakref'. Fail the
    test that leaks it instead of the ones that come after."""
    yield
    from dagster._core.storage.defs_state.base import DefsStateStorage

    assert DefsStateStorage.get() is None, "this test left a Dagster instance open (use `with` on contexts)"
