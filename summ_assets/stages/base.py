"""What every heavy stage shares: its result record, its error, where it sits in a process group, and
the profile as it travels to a remote process (no dagster import here)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from summ_assets.core import env
from summ_assets.core.profiles import Profile, ProfileError, profile_from_data

Progress = Callable[[str], None]


class StageError(RuntimeError):
    """A stage cannot run on these inputs; the message says what to change."""


@dataclass
class StageResult:
    value: dict[str, Any]  # the asset's output (JSON-serializable path record)
    metadata: dict[str, dict[str, Any]]  # Pipes wire format: {"key": {"raw_value": v, "type": t}}
    data_version: str


@dataclass
class Dist:
    """Where this process sits in a `torchrun`/`accelerate launch` group (1 process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    barrier: Callable[[], None] = field(default=lambda: None)

    @classmethod
    def from_env(cls, barrier: Callable[[], None] | None = None) -> Dist:
        return cls(
            rank=int(os.environ.get("RANK", "0")),
            world_size=int(os.environ.get("WORLD_SIZE", "1")),
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
            barrier=barrier or (lambda: None),
        )


def meta(value: Any, type_: str = "__infer__") -> dict[str, Any]:
    """One metadata entry in Dagster Pipes' wire format."""
    return {"raw_value": value, "type": type_}


def say(fn: Progress | None, msg: str) -> None:
    if fn is not None:
        fn(msg)


def shards_from_env() -> int:
    """How many shards the teacher-logit cache is scored in (`$SUMM_LOGIT_SHARDS`, default 1)."""
    raw = env.get(env.LOGIT_SHARDS) or "1"
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise StageError(
            f"${env.LOGIT_SHARDS}={raw!r}: set a positive number of logit-cache shards (default 1)"
        )
    return n


# --- profile on the wire -----------------------------------------------------------------------------


def profile_to_dict(profile: Profile) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(profile)))


def profile_from_dict(data: dict[str, Any]) -> Profile:
    """Inverse of `profile_to_dict` (validated strictly, tuples restored): the remote side runs with
    exactly the profile the orchestrator configured (device, dtype, threads, 4-bit included). A field
    this side does not know means the two sides run different summ-assets versions."""
    try:
        return profile_from_data(data, where="the orchestrator's profile")
    except ProfileError as exc:
        raise StageError(
            f"{exc}\n(the remote may run another summ-assets version than the orchestrator: deploy the same "
            "image to both)"
        ) from None
