"""Resources: where data and artifacts live, which profile runs, and the compute device."""

import os
from pathlib import Path

import dagster as dg

from summ_assets.core.artifacts import ARTIFACTS_ENV, DATA_ENV
from summ_assets.core.profiles import PROFILE_ENV, Profile, get_profile


class SummSettings(dg.ConfigurableResource):
    """Profile + folders. Empty strings fall back to $SUMM_PROFILE / $SUMM_DATA / $SUMM_ARTIFACTS."""

    profile: str = ""
    data_dir: str = ""
    artifacts_dir: str = ""

    def get_profile(self) -> Profile:
        return get_profile(self.profile or None)

    @property
    def data_root(self) -> Path:
        return Path(self.data_dir or os.environ.get(DATA_ENV, "data")).resolve()

    @property
    def artifacts_root(self) -> Path:
        return Path(self.artifacts_dir or os.environ.get(ARTIFACTS_ENV, "artifacts")).resolve()

    def asset_dir(self, asset: str) -> Path:
        return self.artifacts_root / asset


class ComputeResource(dg.ConfigurableResource):
    """Where heavy steps run. `device`: "auto" | "cpu" | "cuda"; `threads`: CPU threads (0 = profile)."""

    device: str = "auto"
    threads: int = 0

    def configure(self, profile: Profile) -> Profile:
        from dataclasses import replace

        device = profile.device if self.device == "auto" else self.device
        threads = self.threads or profile.threads
        return replace(profile, device=device, threads=threads)


def default_resources() -> dict[str, object]:
    artifacts = Path(os.environ.get(ARTIFACTS_ENV, "artifacts")).resolve()
    return {
        "settings": SummSettings(profile=os.environ.get(PROFILE_ENV, "")),
        "compute": ComputeResource(),
        "io_manager": dg.FilesystemIOManager(base_dir=str(artifacts / "_dagster_io")),
    }
