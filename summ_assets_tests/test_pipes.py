"""Heavy assets through Dagster Pipes on CPU (`tiny`): the remote subprocess reports metadata and data
version, and its output equals the in-process asset's; torchrun ranks fan out over cache shards."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import dagster as dg
import pytest

from summ_assets.core import logits_cache as lc
from summ_assets_tests.helpers import N_EXAMPLES, tiny_models, write_dataset

pytestmark = [pytest.mark.filterwarnings("ignore:.*is currently in preview:Warning"), pytest.mark.slow]


def _stub_upstream(t_dir: Path, dataset: str) -> list[dg.AssetsDefinition]:
    """`teacher_base`, `teacher_adapter` and `summary_dataset` as fixed values: the tiny teacher stands in
    for a trained adapter, a synthetic dataset for the ingest half."""

    @dg.asset(name="teacher_base")
    def stub_base() -> dict:
        return {"path": str(t_dir)}

    @dg.asset(name="teacher_adapter")
    def stub_adapter() -> dict:
        return {"path": str(t_dir), "merged": str(t_dir), "adapter": str(t_dir), "version": "stub-teacher"}

    @dg.asset(name="summary_dataset")
    def stub_dataset() -> str:
        return dataset

    return [stub_base, stub_adapter, stub_dataset]


def _resources(art: Path, pipes: bool) -> dict:
    from summ_assets.defs.resources import ComputeResource, SummSettings

    res = {
        "settings": SummSettings(profile="tiny", artifacts_dir=str(art)),
        "compute": ComputeResource(device="cpu", threads=1),
        "io_manager": dg.FilesystemIOManager(base_dir=str(art / "_dagster_io")),
    }
    if pipes:
        res["pipes_client"] = dg.PipesSubprocessClient()
    return res


def _materialize(asset: dg.AssetsDefinition, upstream: list, art: Path, pipes: bool, instance=None):
    instance = instance or dg.DagsterInstance.ephemeral()
    key = asset.key.to_user_string()
    result = dg.materialize([*upstream, asset], instance=instance, resources=_resources(art, pipes))
    assert result.success
    (mat,) = result.asset_materializations_for_node(key)
    return mat, result.output_for_node(key), instance


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("pipes")
    t_dir, _ = tiny_models()
    dataset = write_dataset(tmp / "dataset")
    return tmp, t_dir, dataset


@pytest.fixture(scope="module")
def in_process(inputs):
    from summ_assets.defs.teacher import teacher_logits

    tmp, t_dir, dataset = inputs
    return _materialize(teacher_logits, _stub_upstream(t_dir, dataset), tmp / "art-inproc", pipes=False)


def test_launch_commands() -> None:
    from summ_assets.defs.pipes import launch_command

    assert launch_command("teacher_logits", "python") == [
        sys.executable,
        "-m",
        "summ_assets.remote",
        "teacher_logits",
    ]
    cmd = launch_command("teacher_logits", "torchrun", nproc=4, python="python")
    assert cmd[:3] == ["python", "-m", "torch.distributed.run"] and "--nproc_per_node=4" in cmd
    assert cmd[-3:] == ["-m", "summ_assets.remote", "teacher_logits"]
    assert "--num_processes=8" in launch_command("teacher_logits", "accelerate", nproc=8)
    # training stays one process (device_map="auto" spreads a big teacher over the GPUs)
    assert launch_command("teacher_adapter", "torchrun", nproc=4)[1:] == [
        "-m",
        "summ_assets.remote",
        "teacher_adapter",
    ]
    with pytest.raises(ValueError, match="SUMM_PIPES_LAUNCH"):
        launch_command("teacher_logits", "mpirun")


def test_profiles_travel_to_the_remote_unchanged() -> None:
    from dataclasses import replace

    from summ_assets.core.profiles import PROFILES
    from summ_assets.stages.base import StageError, profile_from_dict, profile_to_dict

    for p in PROFILES.values():
        tuned = replace(p, device="cpu", threads=3, teacher=replace(p.teacher, load_in_4bit=True))
        assert profile_from_dict(profile_to_dict(tuned)) == tuned
    with pytest.raises(StageError, match="another summ-assets version"):
        profile_from_dict({**profile_to_dict(PROFILES["tiny"]), "new_field": 1})


def test_switch_swaps_the_heavy_assets_and_keeps_their_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    from summ_assets.defs import pipes, teacher

    monkeypatch.setenv("SUMM_LAUNCHER", "pipes")
    swapped = pipes.swap([teacher.teacher_adapter, teacher.teacher_logits])
    assert swapped == [pipes.teacher_adapter_pipes, pipes.teacher_logits_pipes]
    for a, b in zip([teacher.teacher_adapter, teacher.teacher_logits], swapped, strict=True):
        sa, sb = next(iter(a.specs)), next(iter(b.specs))
        assert (sb.key, sb.code_version, sb.group_name, b.op.pool) == (
            sa.key,
            sa.code_version,
            sa.group_name,
            a.op.pool,
        )
        assert set(b.keys_by_input_name.values()) == set(a.keys_by_input_name.values())
    assert isinstance(pipes.pipes_resources()["pipes_client"], dg.PipesSubprocessClient)
    monkeypatch.setenv("SUMM_LAUNCHER", "in_process")
    assert pipes.swap([teacher.teacher_logits]) == [teacher.teacher_logits]
    monkeypatch.setenv("SUMM_LAUNCHER", "slurm")
    with pytest.raises(ValueError, match="SUMM_LAUNCHER"):
        pipes.launcher()


@pytest.mark.slow
def test_teacher_logits_through_pipes_equal_in_process(inputs, in_process) -> None:
    from summ_assets.defs.pipes import teacher_logits_pipes

    tmp, t_dir, dataset = inputs
    local_mat, local_out, _ = in_process
    mat, out, instance = _materialize(
        teacher_logits_pipes, _stub_upstream(t_dir, dataset), tmp / "art-pipes", pipes=True
    )
    md = mat.metadata
    # reported by the remote process, not computed here
    assert md["launcher"].value == "pipes"
    assert md["remote/pid"].value != os.getpid() and md["remote/processes"].value == 1
    assert mat.tags["dagster/data_version"] == local_mat.tags["dagster/data_version"] == out["version"]
    assert str(md["artifact"].value).startswith(str(tmp / "art-pipes"))
    same = {
        k for k in local_mat.metadata if k not in ("artifact", "dagster/uri", "path")
    }  # path: I/O manager
    assert {k: md[k] for k in same} == {k: local_mat.metadata[k] for k in same}
    assert md["examples"].value == md["scored_examples"].value == N_EXAMPLES
    # the output the remote reported is what downstream assets load
    assert out["spec"] == local_out["spec"]
    assert lc.load(Path(out["path"])) == lc.load(Path(local_out["path"]))

    # incremental through Pipes: the previous cache is passed to the remote, only new examples scored
    write_dataset(Path(dataset), N_EXAMPLES + 2)
    mat2, out2, _ = _materialize(
        teacher_logits_pipes, _stub_upstream(t_dir, dataset), tmp / "art-pipes", pipes=True, instance=instance
    )
    assert (mat2.metadata["scored_examples"].value, mat2.metadata["reused_examples"].value) == (2, N_EXAMPLES)
    assert set(lc.load(Path(out2["path"]))) > set(lc.load(Path(out["path"])))
    write_dataset(Path(dataset), N_EXAMPLES)


@pytest.mark.slow
def test_torchrun_ranks_score_shards_and_rank0_merges(
    inputs, in_process, monkeypatch: pytest.MonkeyPatch
) -> None:
    from summ_assets.defs.pipes import teacher_logits_pipes

    tmp, t_dir, dataset = inputs
    local_mat, local_out, _ = in_process
    monkeypatch.setenv("SUMM_PIPES_LAUNCH", "torchrun")
    monkeypatch.setenv("SUMM_PIPES_NPROC", "2")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    mat, out, _ = _materialize(
        teacher_logits_pipes, _stub_upstream(t_dir, dataset), tmp / "art-torchrun", pipes=True
    )
    assert mat.metadata["remote/processes"].value == 2
    assert mat.tags["dagster/data_version"] == local_mat.tags["dagster/data_version"]
    assert mat.metadata["shards"].value == 2  # one part file per rank, merged by rank 0
    a, b = lc.load(Path(out["path"])), lc.load(Path(local_out["path"]))
    assert set(a) == set(b)
    for key in a:  # other batch compositions: same positions and targets, values to fp16 precision
        assert a[key]["positions"] == b[key]["positions"] and a[key]["target_ids"] == b[key]["target_ids"]
        assert a[key]["token_ids"][0] == b[key]["token_ids"][0]


@pytest.mark.slow
def test_teacher_adapter_through_pipes_equals_in_process(inputs) -> None:
    from summ_assets.defs.pipes import teacher_adapter_pipes
    from summ_assets.defs.teacher import teacher_adapter

    tmp, t_dir, dataset = inputs
    up = _stub_upstream(t_dir, dataset)
    up = [a for a in up if a.key.to_user_string() != "teacher_adapter"]
    local, local_out, _ = _materialize(teacher_adapter, up, tmp / "ad-inproc", pipes=False)
    remote, remote_out, _ = _materialize(teacher_adapter_pipes, up, tmp / "ad-pipes", pipes=True)
    assert remote.metadata["launcher"].value == "pipes"
    assert remote.metadata["val_loss"].value < remote.metadata["base_val_loss"].value
    assert remote.tags["dagster/data_version"] == local.tags["dagster/data_version"]  # same adapter weights
    assert remote_out["version"] == local_out["version"]
    assert Path(remote_out["merged"]).is_dir()


def test_kubernetes_options_need_dagster_k8s_and_ask_for_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """dagster-k8s is not a dependency: the k8s switches say what to install; the pod/step configs carry
    nvidia.com/gpu limits and mount the artifacts volume where the orchestrator sees it."""
    import importlib.util

    from summ_assets.definitions import ASSETS
    from summ_assets.defs import pipes

    spec = pipes.gpu_pod_spec(gpus=2, pvc="summ-artifacts", mount="/artifacts")
    (container,) = spec["containers"]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": 2}
    assert container["volume_mounts"] == [{"name": "artifacts", "mount_path": "/artifacts"}]
    assert spec["volumes"][0]["persistent_volume_claim"] == {"claim_name": "summ-artifacts"}
    step = pipes.gpu_step_k8s_config(gpus=1)
    assert step["container_config"]["resources"]["limits"] == {"nvidia.com/gpu": 1}
    assert pipes.executor(ASSETS) is None  # default executor unless SUMM_EXECUTOR=k8s
    from summ_assets.refresh import run_config_args

    assert json.loads(run_config_args()[1]) == {"execution": {"config": {"in_process": {}}}}
    monkeypatch.setenv("SUMM_EXECUTOR", "k8s")
    assert run_config_args() == []  # the k8s executor keeps its own config: each step its own pod
    if importlib.util.find_spec("dagster_k8s") is None:
        with pytest.raises(ImportError, match="dagster-k8s==0.29.28"):
            pipes.executor(ASSETS)
        monkeypatch.setenv("SUMM_LAUNCHER", "k8s")
        with pytest.raises(ImportError, match="dagster-k8s==0.29.28"):
            pipes.pipes_resources()


def test_every_gpu_pool_asset_gets_a_gpu_limit_under_the_k8s_executor() -> None:
    """The k8s executor's per-step GPU limits come from the graph: every asset in pool `gpu` (read here
    from the definitions, not from a list) and nothing else."""
    from summ_assets.definitions import ASSETS
    from summ_assets.defs import pipes

    in_pool = {a.key.to_user_string() for a in ASSETS if a.op.pool == "gpu"}
    assert {"teacher_adapter", "teacher_pseudo_summaries", "evaluation_report"} <= in_pool
    per_step = pipes.per_step_k8s_config(ASSETS)
    assert set(per_step) == in_pool
    for cfg in per_step.values():
        assert cfg["container_config"]["resources"]["limits"]["nvidia.com/gpu"] >= 1


def test_deploy_files_parse_and_agree_with_the_code() -> None:
    import yaml

    from summ_assets.defs import pipes

    root = Path(__file__).resolve().parents[1] / "deploy"
    instance = yaml.safe_load((root / "dagster.yaml").read_text())
    assert instance["run_launcher"]["class"] == "K8sRunLauncher"
    assert instance["concurrency"]["pools"]["granularity"] == "op"
    values = yaml.safe_load((root / "helm-values.yaml").read_text())
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    env = {e["name"]: e.get("value") for e in deployment["env"]}
    assert env["SUMM_LAUNCHER"] in pipes.LAUNCHERS and env["SUMM_PROFILE"] == "gemma2"
    assert deployment["dagsterApiGrpcArgs"][-1] == "summ_assets.definitions"
