"""Every ``SUMM_*`` environment variable, named in one place (README "Environment variables" lists them).

Code reads them through `get(NAME)`; nothing else in the package calls ``os.environ`` for a ``SUMM_*``
name. Each entry: name -> (default, what it does).
"""

from __future__ import annotations

import os

PREFIX = "SUMM_"
PROFILE = "SUMM_PROFILE"
DATA = "SUMM_DATA"
ARTIFACTS = "SUMM_ARTIFACTS"
TEACHER_SOURCE = "SUMM_TEACHER_SOURCE"
STUDENT_SOURCE = "SUMM_STUDENT_SOURCE"
LOGIT_SHARDS = "SUMM_LOGIT_SHARDS"
LAUNCHER = "SUMM_LAUNCHER"
PIPES_LAUNCH = "SUMM_PIPES_LAUNCH"
PIPES_NPROC = "SUMM_PIPES_NPROC"
EXECUTOR = "SUMM_EXECUTOR"
K8S_IMAGE = "SUMM_K8S_IMAGE"
K8S_NAMESPACE = "SUMM_K8S_NAMESPACE"
K8S_GPUS = "SUMM_K8S_GPUS"
K8S_ARTIFACTS_PVC = "SUMM_K8S_ARTIFACTS_PVC"
SPLIT_READ_LOG = "SUMM_SPLIT_READ_LOG"
SPEC_READ_LOG = "SUMM_SPEC_READ_LOG"

VARIABLES: dict[str, tuple[str, str]] = {
    PROFILE: (
        "",
        "which profile runs: tiny | demo | gemma2, or the path to your own YAML file (unset: demo)",
    ),
    DATA: ("data", "the data folder (raw/, labels/, eval/); never written"),
    ARTIFACTS: ("artifacts", "the artifacts root (content-addressed folders per asset)"),
    TEACHER_SOURCE: ("", "override the profile's teacher base: hub id or local folder"),
    STUDENT_SOURCE: ("", "override the profile's student base: hub id, local folder or prune:<spec>"),
    LOGIT_SHARDS: ("1", "shards the teacher-logit cache is scored in (>= ranks under torchrun)"),
    LAUNCHER: ("in_process", "heavy teacher steps: in_process | pipes (subprocess) | k8s (PipesK8sClient)"),
    PIPES_LAUNCH: ("python", "remote launch style for teacher_logits: python | torchrun | accelerate"),
    PIPES_NPROC: ("1", "processes per torchrun/accelerate launch"),
    EXECUTOR: ("", "k8s: Dagster's k8s_job_executor, GPU limits on every pool-gpu step"),
    K8S_IMAGE: ("", "image with summ-assets + dagster-pipes for SUMM_LAUNCHER=k8s"),
    K8S_NAMESPACE: ("", "namespace for the Pipes pods (default: the client's)"),
    K8S_GPUS: ("1", "nvidia.com/gpu per heavy pod"),
    K8S_ARTIFACTS_PVC: ("summ-artifacts", "PVC mounted at the artifacts root in every pod"),
    SPLIT_READ_LOG: (
        "",
        "append one JSON line per split read (split, caller) to this file: audits that no test set reaches a decision",
    ),
    SPEC_READ_LOG: (
        "",
        "append one JSON line per profile field an asset reads (asset, field) to this file: audits the specs",
    ),
}


def get(name: str) -> str:
    """The variable's value, stripped, or its registered default."""
    if name not in VARIABLES:
        raise KeyError(f"{name} is not a registered SUMM_* variable (add it to summ_assets/core/env.py)")
    value = os.environ.get(name, "").strip()
    return value or VARIABLES[name][0]


def forwarded() -> dict[str, str]:
    """The variables a remote process (a Pipes pod) must see too: every ``SUMM_*`` and ``HF_*``."""
    return {k: v for k, v in os.environ.items() if k.startswith((PREFIX, "HF_"))}


def get_int(name: str) -> int:
    raw = get(name)
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"${name}={raw!r}: expected a whole number") from None


def markdown_table() -> str:
    """The docs/operations.md table of every variable (a test keeps it in step with this registry);
    a `|` inside a cell is escaped so the table renders."""
    rows = "\n".join(
        f"| `{k}` | {f'`{d}`' if d else ''} | {what.replace('|', chr(92) + '|')} |"
        for k, (d, what) in VARIABLES.items()
    )
    return "| variable | default | what it does |\n|---|---|---|\n" + rows
