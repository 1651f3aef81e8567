"""Heavy assets through Dagster Pipes: the same stage body, run in a subprocess, a torchrun group or a pod.

One switch, read when the definitions load: ``SUMM_LAUNCHER``

- ``in_process`` (default): `teacher_adapter` / `teacher_logits` run inside the Dagster step.
- ``pipes``: the same assets (same key, code version, pool, inputs) launch ``python -m summ_assets.remote
  <stage>`` through `dg.PipesSubprocessClient` (resource ``pipes_client``); the remote reports the
  metadata and data version back. ``SUMM_PIPES_LAUNCH=torchrun|accelerate`` + ``SUMM_PIPES_NPROC=N``
  turn teacher-logit extraction into an N-process data-parallel job (one shard per rank, rank 0 merges);
  `LAUNCH_COMMANDS` below is the list of commands.
- ``k8s``: the resource is `dagster_k8s.PipesK8sClient` (package ``dagster-k8s``, not a dependency of
  this project: install it in the cluster image); each heavy step is a pod with ``nvidia.com/gpu``
  limits (``SUMM_K8S_IMAGE``, ``SUMM_K8S_NAMESPACE``, ``SUMM_K8S_GPUS``, ``SUMM_K8S_ARTIFACTS_PVC``).

Independently, ``SUMM_EXECUTOR=k8s`` makes `executor()` the `k8s_job_executor` (every step its own pod;
``nvidia.com/gpu`` limits only for the heavy steps). See deploy/ for the instance (K8sRunLauncher) and
the Helm values.
"""

import sys
from collections.abc import Iterable, Sequence
from typing import Any

import dagster as dg

from summ_assets.core import env
from summ_assets.defs import teacher
from summ_assets.defs.graph import heavy_steps
from summ_assets.defs.resources import ComputeResource, SummSettings
from summ_assets.defs.stage_io import previous_artifact, stage_extras
from summ_assets.stages.base import shards_from_env

LAUNCHER_ENV = env.LAUNCHER
LAUNCHERS = ("in_process", "pipes", "k8s")
LAUNCH_ENV = env.PIPES_LAUNCH
NPROC_ENV = env.PIPES_NPROC

# The remote command per launch style; "{python}" is this interpreter locally, "python" in a pod.
# `teacher_adapter` always runs as one process ("python"): a 9B teacher is spread over a box's GPUs by
# device_map="auto"; `teacher_logits` is data parallel (each rank scores its shards of the examples).
LAUNCH_COMMANDS: dict[str, list[str]] = {
    "python": ["{python}", "-m", "summ_assets.remote"],
    "torchrun": [
        "{python}",
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node={nproc}",
        "-m",
        "summ_assets.remote",
    ],
    "accelerate": [
        "{python}",
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes={nproc}",
        "-m",
        "summ_assets.remote",
    ],
}
DATA_PARALLEL_STAGES = ("teacher_logits",)


def launcher() -> str:
    value = env.get(LAUNCHER_ENV)
    if value not in LAUNCHERS:
        raise ValueError(f"${LAUNCHER_ENV}={value!r}: choose one of {LAUNCHERS}")
    return value


def launch_command(
    stage: str, launch: str | None = None, nproc: int | None = None, python: str | None = None
) -> list[str]:
    """The remote command for `stage`, e.g. ``[python, -m, summ_assets.remote, teacher_logits]``."""
    launch = launch or env.get(LAUNCH_ENV)
    if launch not in LAUNCH_COMMANDS:
        raise ValueError(f"${LAUNCH_ENV}={launch!r}: choose one of {sorted(LAUNCH_COMMANDS)}")
    if stage not in DATA_PARALLEL_STAGES:
        launch = "python"
    n = nproc if nproc is not None else env.get_int(NPROC_ENV)
    if n < 1:
        raise ValueError(f"${NPROC_ENV}={n}: use a positive process count")
    subst = {"python": python or sys.executable, "nproc": str(n)}
    return [part.format(**subst) for part in LAUNCH_COMMANDS[launch]] + [stage]


def gpu_pod_spec(gpus: int | None = None, pvc: str | None = None, mount: str | None = None) -> dict[str, Any]:
    """`base_pod_spec` for PipesK8sClient: GPU limits + the shared artifacts volume at the same path."""
    gpus = gpus if gpus is not None else env.get_int(env.K8S_GPUS)
    pvc = pvc or env.get(env.K8S_ARTIFACTS_PVC)
    mount = mount or str(SummSettings().artifacts_root)
    return {
        "containers": [
            {
                "name": "dagster-pipes-execution",
                "resources": {"limits": {"nvidia.com/gpu": gpus}, "requests": {"nvidia.com/gpu": gpus}},
                "volume_mounts": [{"name": "artifacts", "mount_path": mount}],
            }
        ],
        "volumes": [{"name": "artifacts", "persistent_volume_claim": {"claim_name": pvc}}],
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "restart_policy": "Never",
    }


def pipes_resources() -> dict[str, Any]:
    """``pipes_client``: subprocess locally, `PipesK8sClient` with ``SUMM_LAUNCHER=k8s``."""
    if launcher() == "k8s":
        try:
            from dagster_k8s import PipesK8sClient
        except ImportError as exc:  # not a dependency of this project
            raise _needs_dagster_k8s(f"{LAUNCHER_ENV}=k8s") from exc
        return {"pipes_client": PipesK8sClient()}
    return {"pipes_client": dg.PipesSubprocessClient()}


# --- k8s_job_executor: every step its own pod, GPUs only for the heavy ones ------------------------------

EXECUTOR_ENV = env.EXECUTOR


def gpu_step_k8s_config(gpus: int | None = None) -> dict[str, Any]:
    """`per_step_k8s_config` entry for a heavy step (k8s_job_executor): GPU limits + GPU-node toleration."""
    gpus = gpus if gpus is not None else env.get_int(env.K8S_GPUS)
    return {
        "container_config": {
            "resources": {"limits": {"nvidia.com/gpu": gpus}, "requests": {"nvidia.com/gpu": gpus}}
        },
        "pod_spec_config": {
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        },
    }


def _needs_dagster_k8s(what: str) -> ImportError:
    return ImportError(
        f"{what} needs the dagster-k8s package (pip install dagster-k8s==0.29.28, the release that "
        "matches dagster 1.13.28) in the image that runs the Dagster code"
    )


def per_step_k8s_config(assets: Iterable[dg.AssetsDefinition]) -> dict[str, dict[str, Any]]:
    """`k8s_job_executor`'s ``per_step_k8s_config``: GPU limits for every asset whose pool is `gpu`."""
    return {step: gpu_step_k8s_config() for step in heavy_steps(assets)}


def default_executor() -> bool:
    """Whether the definitions use Dagster's default executor (``SUMM_EXECUTOR`` is not ``k8s``)."""
    return env.get(EXECUTOR_ENV) != "k8s"


def executor(assets: Iterable[dg.AssetsDefinition]) -> Any:
    """``SUMM_EXECUTOR=k8s``: `k8s_job_executor` with `gpu_step_k8s_config` for every asset of `assets`
    whose pool is `gpu` (`graph.heavy_steps`); else None (Dagster's default executor)."""
    if default_executor():
        return None
    try:
        from dagster_k8s import k8s_job_executor
    except ImportError as exc:
        raise _needs_dagster_k8s(f"{EXECUTOR_ENV}=k8s") from exc
    return k8s_job_executor.configured({"per_step_k8s_config": per_step_k8s_config(assets)})


# --- launching a stage remotely ---------------------------------------------------------------------


def run_remote(
    context: dg.AssetExecutionContext, client: Any, stage: str, extras: dict[str, Any]
) -> dg.Output:
    """Launch `stage` remotely and return the output the remote reported (value, metadata, version)."""
    if isinstance(client, dg.PipesSubprocessClient):
        command: Sequence[str] = launch_command(stage)
        context.log.info(f"pipes: {' '.join(command)}")
        invocation = client.run(context=context, command=list(command), extras=extras)
    else:  # PipesK8sClient
        command = launch_command(stage, python="python")
        image = env.get(env.K8S_IMAGE)
        if not image:
            raise dg.Failure(
                f"{LAUNCHER_ENV}=k8s: set SUMM_K8S_IMAGE to the image with summ-assets + dagster-pipes"
            )
        invocation = client.run(
            context=context,
            image=image,
            command=list(command),
            namespace=env.get(env.K8S_NAMESPACE) or None,
            extras=extras,
            env=env.forwarded(),
            base_pod_spec=gpu_pod_spec(),
        )
    mat = invocation.get_materialize_result()
    values = [m["value"] for m in invocation.get_custom_messages() if isinstance(m, dict) and "value" in m]
    if not values or mat.data_version is None:
        raise dg.Failure(f"pipes: the remote {stage} reported no output value or data version")
    return dg.Output(values[-1], metadata=dict(mat.metadata or {}), data_version=mat.data_version)


# --- the Pipes variants of the heavy assets (same key, code version, pool, inputs) -----------------------


def _same_as(asset: dg.AssetsDefinition) -> dict[str, Any]:
    spec = next(iter(asset.specs))
    return {
        "name": spec.key.path[-1],
        "group_name": spec.group_name,
        "code_version": spec.code_version,
        "kinds": set(spec.kinds),
        "description": f"{spec.description} [launched through Dagster Pipes]",
        "pool": asset.op.pool,
    }


@dg.asset(**_same_as(teacher.teacher_adapter))
def teacher_adapter_pipes(
    context: dg.AssetExecutionContext,
    settings: SummSettings,
    compute: ComputeResource,
    pipes_client: dg.ResourceParam[dg.PipesClient],
    teacher_base: dict,
    summary_dataset: str,
) -> dg.Output:
    extras = stage_extras(
        "teacher_adapter",
        settings,
        compute,
        {"teacher_base": teacher_base, "summary_dataset": summary_dataset},
    )
    return run_remote(context, pipes_client, "teacher_adapter", extras)


@dg.asset(**_same_as(teacher.teacher_logits))
def teacher_logits_pipes(
    context: dg.AssetExecutionContext,
    settings: SummSettings,
    compute: ComputeResource,
    pipes_client: dg.ResourceParam[dg.PipesClient],
    teacher_adapter: dict,
    summary_dataset: str,
) -> dg.Output:
    extras = stage_extras(
        "teacher_logits",
        settings,
        compute,
        {"teacher_adapter": teacher_adapter, "summary_dataset": summary_dataset},
        {"prev_dir": previous_artifact(context), "num_shards": shards_from_env()},
    )
    return run_remote(context, pipes_client, "teacher_logits", extras)


PIPES_ASSETS = {"teacher_adapter": teacher_adapter_pipes, "teacher_logits": teacher_logits_pipes}


def swap(assets: list[dg.AssetsDefinition], which: str | None = None) -> list[dg.AssetsDefinition]:
    """`assets` with the heavy ones replaced by their Pipes variants when the launcher is not in-process."""
    if (which or launcher()) == "in_process":
        return list(assets)
    return [PIPES_ASSETS.get(a.key.to_user_string(), a) for a in assets]
