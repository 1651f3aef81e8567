"""ComputeResource: which device/dtype/threads it picks, why, and that the reasons reach the run log."""

from __future__ import annotations

import dagster as dg
import pytest

from summ_assets.core.profiles import GEMMA2, TINY
from summ_assets.defs.resources import ComputeResource

NO_GPU = (False, "torch.cuda.is_available() is False")
GPU = (True, "1 GPU(s), cuda:0 = NVIDIA H100")


def test_cuda_profile_uses_the_gpu_when_there_is_one() -> None:
    prof, lines = ComputeResource().choose(GEMMA2, GPU)
    assert (prof.device, prof.dtype, prof.threads) == ("cuda", "bfloat16", None)
    assert lines[0] == (
        "info",
        "device=cuda (compute.device=auto, profile 'gemma2' asks cuda; 1 GPU(s), cuda:0 = NVIDIA H100)",
    )


def test_cuda_profile_falls_back_to_cpu_float32_and_warns() -> None:
    prof, lines = ComputeResource().choose(GEMMA2, NO_GPU)
    assert (prof.device, prof.dtype) == ("cpu", "float32")
    level, msg = lines[0]
    assert level == "warning" and "torch.cuda.is_available() is False" in msg and "falling back" in msg
    assert lines[1] == ("info", "dtype=float32 (profile dtype bfloat16 is meant for a GPU; cpu fallback)")


def test_cpu_profile_stays_on_cpu_even_with_a_gpu() -> None:
    prof, lines = ComputeResource().choose(TINY, GPU)
    assert (prof.device, prof.dtype, prof.threads) == ("cpu", "float32", 1)
    assert "profile 'tiny' runs on cpu" in lines[0][1]
    assert ("info", "threads=1 (profile 'tiny')") in lines


def test_explicit_fields_win_over_the_profile() -> None:
    res = ComputeResource(device="cpu", dtype="bfloat16", threads=3, load_in_4bit=True, max_memory="20GiB")
    prof, lines = res.choose(GEMMA2, GPU)
    assert (prof.device, prof.dtype, prof.threads, prof.teacher.load_in_4bit) == ("cpu", "bfloat16", 3, True)
    assert prof.max_memory == "20GiB"  # the model loaders cap each GPU with it (device_map="auto")
    assert GEMMA2.teacher.load_in_4bit is False  # the shipped profile itself is untouched
    assert ("info", "load_in_4bit=True (compute.load_in_4bit), max_memory=20GiB per GPU") in lines
    # every other profile section passes through unchanged
    assert (prof.student, prof.data, prof.cache, prof.eval) == (
        GEMMA2.student,
        GEMMA2.data,
        GEMMA2.cache,
        GEMMA2.eval,
    )


def test_bad_settings_fail_naming_the_field() -> None:
    with pytest.raises(RuntimeError, match=r"device='cuda' but torch.cuda.is_available\(\) is False"):
        ComputeResource(device="cuda").choose(TINY, NO_GPU)
    with pytest.raises(ValueError, match="ComputeResource.dtype='fp8'"):
        ComputeResource(dtype="fp8").choose(TINY, GPU)
    with pytest.raises(ValueError, match="ComputeResource.max_memory='20 gigs'"):
        ComputeResource(max_memory="20 gigs").choose(TINY, GPU)
    with pytest.raises(ValueError, match="ComputeResource.device='tpu'"):
        ComputeResource(device="tpu").choose(TINY, GPU)


def test_configure_logs_its_choice_into_the_run_event_log(monkeypatch: pytest.MonkeyPatch) -> None:
    from summ_assets.defs import resources

    monkeypatch.setattr(resources, "cuda_info", lambda: NO_GPU)
    seen: dict = {}

    @dg.asset
    def uses_compute(compute: ComputeResource) -> None:
        seen["profile"] = compute.configure(TINY)

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [uses_compute], resources={"compute": ComputeResource(threads=2)}, instance=instance
    )
    assert result.success
    assert (seen["profile"].device, seen["profile"].threads) == ("cpu", 2)
    messages = [r.user_message for r in instance.all_logs(result.run_id)]
    assert any(
        m == "compute: device=cpu (compute.device=auto and profile 'tiny' runs on cpu "
        "(torch.cuda.is_available() is False))"
        for m in messages
    ), messages
    assert "compute: threads=2 (compute.threads)" in messages


def test_configure_accepts_a_logger(monkeypatch: pytest.MonkeyPatch) -> None:
    from summ_assets.defs import resources

    monkeypatch.setattr(resources, "cuda_info", lambda: GPU)
    got: list[tuple[str, str]] = []

    class Log:
        def info(self, m: str) -> None:
            got.append(("info", m))

        def warning(self, m: str) -> None:
            got.append(("warning", m))

    prof = ComputeResource().configure(GEMMA2, log=Log())
    assert prof.device == "cuda"
    assert [lvl for lvl, _ in got] == ["info"] * 4 and got[0][1].startswith("compute: device=cuda")
