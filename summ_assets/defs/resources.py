"""Resources: where data and artifacts live, which profile runs, and the compute device."""

import os
import re
from pathlib import Path
from typing import Any

import dagster as dg

from summ_assets.core import env, profiles
from summ_assets.core.artifacts import artifacts_root, data_root
from summ_assets.core.profiles import Profile, get_profile


class SummSettings(dg.ConfigurableResource):
    """Profile + folders. Empty strings fall back to $SUMM_PROFILE / $SUMM_DATA / $SUMM_ARTIFACTS."""

    profile: str = ""
    data_dir: str = ""
    artifacts_dir: str = ""

    def get_profile(self) -> Profile:
        return get_profile(self.profile or None)

    @property
    def data_root(self) -> Path:
        return Path(self.data_dir).resolve() if self.data_dir else data_root()

    @property
    def artifacts_root(self) -> Path:
        return Path(self.artifacts_dir).resolve() if self.artifacts_dir else artifacts_root()

    def asset_dir(self, asset: str) -> Path:
        return self.artifacts_root / asset

    @property
    def store_root(self) -> Path:
        """The generation store every model shares: a folder per (model version, decoding settings)."""
        return self.asset_dir("generation_store")


DEVICES = profiles.DEVICES  # "auto" = the profile's device (cpu when no GPU is usable)
DTYPES = ("auto", *profiles.DTYPES)  # "auto" = the profile's dtype
_MEMORY = re.compile(profiles.MEMORY_PATTERN)


def cuda_info() -> tuple[bool, str]:
    """(is CUDA usable, a short description) — torch is imported here, inside a run, never at load."""
    import torch

    if not torch.cuda.is_available():
        return False, "torch.cuda.is_available() is False"
    n = torch.cuda.device_count()
    return True, f"{n} GPU(s), cuda:0 = {torch.cuda.get_device_name(0)}"


class ComputeResource(dg.ConfigurableResource):
    """Where and how heavy steps run; every field defaults to what the profile says.

    `device`: "auto" (the profile's device; a CUDA profile falls back to CPU when no GPU is usable) |
    "cpu" | "cuda" (fails when no GPU is usable). `dtype`: "auto" (the profile's; float32 after a CPU
    fallback) | "float32" | "bfloat16". `threads`: torch CPU threads (0 = the profile's; none = all
    cores). `load_in_4bit`: QLoRA teacher on/off (unset = the profile's). `max_memory`: cap per GPU
    for `device_map="auto"`, e.g. "20GiB" (unset = no cap).
    """

    device: str = "auto"
    dtype: str = "auto"
    threads: int = 0
    load_in_4bit: bool | None = None
    max_memory: str | None = None

    def _check(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"ComputeResource.device={self.device!r}: choose one of {DEVICES}")
        if self.dtype not in DTYPES:
            raise ValueError(f"ComputeResource.dtype={self.dtype!r}: choose one of {DTYPES}")
        if self.threads < 0:
            raise ValueError(f"ComputeResource.threads={self.threads}: use 0 (profile) or a positive count")
        if self.max_memory is not None and not _MEMORY.match(self.max_memory.strip()):
            raise ValueError(
                f"ComputeResource.max_memory={self.max_memory!r}: write a size like '20GiB' or '512MiB'"
            )

    def choose(self, profile: Profile, cuda: tuple[bool, str]) -> tuple[Profile, list[tuple[str, str]]]:
        """The configured profile and the (level, message) lines that explain each choice."""
        from dataclasses import replace

        self._check()
        usable, about = cuda
        lines: list[tuple[str, str]] = []
        fell_back = False
        if self.device == "cpu":
            device, why = "cpu", f"compute.device=cpu; {about}"
        elif self.device == "cuda":
            if not usable:
                raise RuntimeError(
                    f"ComputeResource.device='cuda' but {about}: run on a machine with a GPU, or set "
                    "device to 'auto' or 'cpu'"
                )
            device, why = "cuda", f"compute.device=cuda; {about}"
        elif profile.device == "cpu":
            device, why = "cpu", f"compute.device=auto and profile {profile.name!r} runs on cpu ({about})"
        elif usable:
            device, why = (
                "cuda",
                f"compute.device=auto, profile {profile.name!r} asks {profile.device}; {about}",
            )
        else:
            device, fell_back = "cpu", True
            why = f"profile {profile.name!r} asks {profile.device} but {about}: falling back to cpu"
        lines.append(("warning" if fell_back else "info", f"device={device} ({why})"))

        if self.dtype != "auto":
            dtype, why = self.dtype, "compute.dtype"
        elif fell_back and profile.dtype != "float32":
            dtype, why = "float32", f"profile dtype {profile.dtype} is meant for a GPU; cpu fallback"
        else:
            dtype, why = profile.dtype, f"profile {profile.name!r}"
        lines.append(("info", f"dtype={dtype} ({why})"))

        threads = self.threads or profile.threads
        origin = (
            "compute.threads" if self.threads else f"profile {profile.name!r}" if threads else "all cores"
        )
        lines.append(("info", f"threads={threads or os.cpu_count()} ({origin})"))

        in_4bit = profile.teacher.load_in_4bit if self.load_in_4bit is None else self.load_in_4bit
        origin = "profile" if self.load_in_4bit is None else "compute.load_in_4bit"
        extra = f", max_memory={self.max_memory} per GPU" if self.max_memory else ""
        lines.append(("info", f"load_in_4bit={in_4bit} ({origin}){extra}"))

        configured = replace(
            profile,
            device=device,
            dtype=dtype,
            threads=threads,
            max_memory=self.max_memory.strip() if self.max_memory else profile.max_memory,
            teacher=replace(profile.teacher, load_in_4bit=in_4bit),
        )
        return configured, lines

    def configure(self, profile: Profile, log: Any = None) -> Profile:
        """`profile` with this resource's device/dtype/threads/4-bit applied; logs what it picked and why.

        `log`: anything with `.info`/`.warning` (e.g. `context.log`); default: Dagster's logger, which
        lands in the run's event log when called inside a step.
        """
        configured, lines = self.choose(profile, cuda_info())
        log = log or dg.get_dagster_logger("summ_assets.compute")
        for level, msg in lines:
            getattr(log, level)(f"compute: {msg}")
        return configured


def default_resources() -> dict[str, object]:
    """settings, compute and the IO manager (the Pipes client is added by `summ_assets.definitions`)."""
    return {
        "settings": SummSettings(profile=env.get(env.PROFILE)),
        "compute": ComputeResource(),
        "io_manager": dg.FilesystemIOManager(base_dir=str(artifacts_root() / "_dagster_io")),
    }
