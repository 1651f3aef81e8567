"""benchmarks/bench_gpu.py: skips cleanly without a GPU, knows the cards' peaks, its memory plan says
what fits where, and every stage runs end to end on CPU with tiny models (so the GPU run is not its
first run)."""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys

import pytest

from summ_assets_tests.helpers import REPO

SCRIPT = REPO / "benchmarks" / "bench_gpu.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_without_a_gpu_it_says_skipped_and_exits_0() -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("skipped: no GPU")


def test_peak_table() -> None:
    b = _bench()
    assert b.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert b.peak_tflops("NVIDIA H200") == 989.0
    assert b.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert b.peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert b.peak_tflops("NVIDIA L4") == 121.0
    assert b.peak_tflops("NVIDIA GeForce RTX 4090") == 165.0
    assert b.peak_tflops("Some Future GPU") is None


@pytest.mark.slow  # builds gemma-2 9B and 2B on the meta device
def test_memory_plan_uses_the_real_architectures() -> None:
    b = _bench()
    total, embed = b.param_counts("gemma-2-9b")
    assert 9.2e9 < total < 9.3e9 and embed == 256000 * 3584
    assert 2.6e9 < b.param_counts("gemma-2-2b")[0] < 2.65e9
    args = argparse.Namespace(
        teacher="gemma-2-9b", student="gemma-2-2b", prompt_tokens=1024, summary_tokens=128, lora_batch=2,
        logits_batch=4, kd_batch=2, gen_batch=16, new_tokens=128,
    )  # fmt: skip
    plan = {name: gib for name, gib, _ in b.memory_plan(args)}
    qlora = plan["teacher QLoRA (4-bit), batch 2, grad. checkpointing"]
    assert qlora < 24 * 0.9 * 1e9 / 2**30  # the 24 GB plan: QLoRA teacher
    assert plan["teacher LoRA, bf16, batch 2"] > 40 * 1e9 / 2**30  # bf16 LoRA without checkpointing: 80 GB
    assert (
        plan["teacher LoRA, bf16, batch 2"] > plan["teacher LoRA, bf16, batch 2, grad. checkpointing"] > qlora
    )


@pytest.mark.slow  # trains and generates with tiny models, every stage
def test_every_stage_runs_on_cpu_with_tiny_models(capsys: pytest.CaptureFixture) -> None:
    argv = "--device cpu --teacher tiny --student tiny --prompt-tokens 24 --summary-tokens 8 --lora-batch 2 "
    argv += "--logits-batch 2 --kd-batch 2 --gen-batch 2 --new-tokens 4 --warmup 1 --steps 2 --threads 1"
    assert _bench().main(argv.split()) == 0
    out = capsys.readouterr().out
    lines = {ln.split(":")[0]: ln for ln in out.splitlines() if "tokens/s," in ln}
    assert set(lines) == {
        "teacher LoRA step",
        "logit extraction",
        "KD step (student, full)",
        "generation (student)",
    }
    for line in lines.values():
        assert float(line.split(": ")[1].split(" tokens/s")[0]) > 0
        assert "MFU n/a" in line  # no bf16 peak for a CPU
