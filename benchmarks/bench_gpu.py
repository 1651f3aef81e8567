"""GPU throughput of the heavy stages: tokens/s, step time and MFU against the card's bf16 peak.

Usage:
    .venv/bin/python benchmarks/bench_gpu.py                       # gemma-2-9b teacher, gemma-2-2b student
        [--teacher gemma-2-9b] [--student gemma-2-2b] [--prompt-tokens 1024] [--summary-tokens 128]
        [--lora-batch 2] [--logits-batch 4] [--kd-batch 2] [--gen-batch 16] [--new-tokens 128]
        [--warmup 2] [--steps 5] [--gradient-checkpointing] [--peak-tflops X] [--stages lora,logits,kd,gen]
    .venv/bin/python benchmarks/bench_gpu.py --plan [--avg-tokens 600] [--mfu 0.4]   # estimates, no GPU needed
    .venv/bin/python benchmarks/bench_gpu.py --device cpu --teacher tiny --student tiny   # smoke test

Without CUDA (and without --device cpu / --plan) it prints "skipped: no GPU" and exits 0, so `make bench`
runs everywhere.

Models are the real Gemma-2 architectures (docs: notes/platform.md section 12) with random weights built
from config on the GPU, bf16, eager attention (soft-capping on) - no hub, same FLOPs and memory as the
released weights, no quality signal. Data are random token ids shaped like the gemma2 profile's
examples (prompt + summary). Each stage runs the product's own code:

- teacher LoRA step: peft LoRA r16 on all projections; loss = `core.lm.completion_ce` (CE on summary
  tokens, logits only there, as the SFT trainer does); backward; AdamW step on the adapter.
- logit extraction: `core.logits_cache.capture` (teacher-forced pass, full-vocab log-softmax, top-k 64
  on the GPU) over `steps` batches.
- KD step: full-parameter student step with the DistillationTrainer's loss (`completion_logits`, CE
  + `core.kd.sparse_kd_loss` at alpha 0.5 against the cached top-k rows); AdamW (bf16 states).
- generation: greedy `generate` on the student, max_new_tokens == min_new_tokens.

FLOPs: c * (N_body * tokens + N_head * head_positions), N_body = parameters outside the (tied)
embedding, N_head = embedding parameters (applied as the LM head only at the positions whose logits are
computed); c = 2 forward, 6 training (the usual 6N convention), 4 for LoRA (frozen base weights need no
weight gradients; the 6N figure is printed too). Attention-score FLOPs are not counted. MFU = achieved
FLOP/s / the card's dense bf16 peak (PEAK_BF16_TFLOPS; pass --peak-tflops for other cards).

Prints one line per stage and a table. No figure from this script is in the README unless it was run
on a GPU; this repository's CI has none.
"""

from __future__ import annotations

import argparse
import gc
import math
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from summ_assets.core.offline import use_offline_env  # noqa: E402

use_offline_env()

# dense bf16 tensor-core peaks (TFLOP/s, no sparsity); first substring match of the device name wins
PEAK_BF16_TFLOPS: list[tuple[str, float]] = [
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.0),  # SXM
    ("A100", 312.0),
    ("L4", 121.0),
    ("RTX 4090", 165.0),
]
# HBM bandwidth (TB/s) for the decode-time estimate in --plan
H100_SXM_TBPS = 3.35

_CAPS = dict(final_logit_softcapping=30.0, attn_logit_softcapping=50.0, sliding_window=4096)
ARCHS: dict[str, dict[str, Any]] = {
    "gemma-2-9b": dict(
        hidden_size=3584,
        num_hidden_layers=42,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=256,
        intermediate_size=14336,
        vocab_size=256000,
        **_CAPS,
    ),
    "gemma-2-2b": dict(
        hidden_size=2304,
        num_hidden_layers=26,
        num_attention_heads=8,
        num_key_value_heads=4,
        head_dim=256,
        intermediate_size=9216,
        vocab_size=256000,
        **_CAPS,
    ),
    "tiny": dict(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        intermediate_size=256,
        vocab_size=512,
        **_CAPS,
    ),
}
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def peak_tflops(device_name: str) -> float | None:
    for key, value in PEAK_BF16_TFLOPS:
        if key.lower() in device_name.lower():
            return value
    return None


def gemma2_config(arch: str) -> Any:
    from transformers import Gemma2Config

    if arch not in ARCHS:
        raise SystemExit(f"unknown architecture {arch!r}; choose one of {sorted(ARCHS)}")
    dims = ARCHS[arch]
    return Gemma2Config(
        **dims,
        query_pre_attn_scalar=dims["head_dim"],
        tie_word_embeddings=True,
        attn_implementation="eager",
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )


def param_counts(arch: str) -> tuple[int, int]:
    """(total, embedding) parameters, counted on the meta device (no memory)."""
    import torch
    from transformers import Gemma2ForCausalLM

    with torch.device("meta"):
        model = Gemma2ForCausalLM(gemma2_config(arch))
    total = sum(p.numel() for p in model.parameters())
    return total, model.get_input_embeddings().weight.numel()


def lora_params(arch: str, r: int = 16) -> int:
    d = ARCHS[arch]
    h, i, hd = d["hidden_size"], d["intermediate_size"], d["head_dim"]
    q, kv = d["num_attention_heads"] * hd, d["num_key_value_heads"] * hd
    shapes = [(h, q), (h, kv), (h, kv), (q, h), (h, i), (h, i), (i, h)]
    return d["num_hidden_layers"] * sum(r * (a + b) for a, b in shapes)


def build(arch: str, device: str, dtype: Any) -> Any:
    import torch
    from transformers import Gemma2ForCausalLM

    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        torch.manual_seed(0)
        with torch.device(device):
            model = Gemma2ForCausalLM(gemma2_config(arch))
    finally:
        torch.set_default_dtype(old)
    return model


def random_examples(n: int, prompt: int, summary: int, vocab: int, seed: int = 0) -> list[dict[str, Any]]:
    import hashlib
    import random

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        ids = [rng.randrange(10, vocab) for _ in range(prompt + summary)]
        key = hashlib.sha256(str(ids).encode()).hexdigest()
        out.append({"example_key": key, "section_id": key[:8], "input_ids": ids, "completion_start": prompt})
    return out


class Clock:
    def __init__(self, device: str):
        self.device = device

    def sync(self) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()

    def run(self, fn: Any, warmup: int, steps: int) -> list[float]:
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(steps):
            self.sync()
            t0 = time.perf_counter()
            fn()
            self.sync()
            times.append(time.perf_counter() - t0)
        return times


def _free(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device: str) -> float:
    if not device.startswith("cuda"):
        return float("nan")
    import torch

    return torch.cuda.max_memory_allocated() / 2**30


def _row(
    stage: str, tokens: float, seconds: float, flop: float, peak: float | None, device: str, note: str
) -> dict:
    tflops = flop / seconds / 1e12 if seconds > 0 else float("nan")
    return {
        "stage": stage,
        "tokens_per_s": tokens / seconds if seconds > 0 else float("nan"),
        "step_s": seconds,
        "tflops": tflops,
        "mfu": tflops / peak if peak else float("nan"),
        "peak_gib": _peak_gib(device),
        "flop_model": note,
    }


# ---------------------------------------------------------------------------- stages


def bench_lora(
    args: argparse.Namespace, teacher: Any, n_params: tuple[int, int], peak: float | None
) -> tuple[Any, dict]:
    import torch
    from peft import LoraConfig, get_peft_model

    from summ_assets.core.lm import completion_ce, pad_batch

    model = get_peft_model(
        teacher,
        LoraConfig(
            r=16, lora_alpha=32, lora_dropout=0.05, target_modules=list(LORA_TARGETS), task_type="CAUSAL_LM"
        ),
    )
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    ex = random_examples(
        args.lora_batch, args.prompt_tokens, args.summary_tokens, ARCHS[args.teacher]["vocab_size"]
    )
    batch = {k: v.to(args.device) for k, v in pad_batch(ex, 0).items()}

    def step() -> None:
        loss = completion_ce(model, batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    _free(args.device)
    times = Clock(args.device).run(step, args.warmup, args.steps)
    s = sorted(times)[len(times) // 2]
    total, embed = n_params
    tokens = args.lora_batch * (args.prompt_tokens + args.summary_tokens)
    head = args.lora_batch * args.summary_tokens
    flop4 = 4 * ((total - embed) * tokens + embed * head)
    row = _row("teacher LoRA step", tokens, s, flop4, peak, args.device, "4N (6N convention: MFU x1.5)")
    merged = model.merge_and_unload()
    merged.eval()
    return merged, row


def bench_logits(
    args: argparse.Namespace, teacher: Any, n_params: tuple[int, int], peak: float | None
) -> tuple[list, dict]:
    from summ_assets.core import logits_cache as lc

    spec = lc.CacheSpec(
        mode="topk",
        k=64,
        n_samples=64,
        teacher_fingerprint="bench",
        tokenizer_hash="-",
        chat_template_hash="-",
    )
    n = args.logits_batch * (args.warmup + args.steps)
    ex = random_examples(
        n, args.prompt_tokens, args.summary_tokens, ARCHS[args.teacher]["vocab_size"], seed=1
    )
    warm = ex[: args.logits_batch * args.warmup]
    timed = ex[len(warm) :]
    _free(args.device)
    if warm:
        lc.capture(teacher, warm, spec, 0, args.logits_batch)
    clock = Clock(args.device)
    clock.sync()
    t0 = time.perf_counter()
    rows = lc.capture(teacher, timed, spec, 0, args.logits_batch)
    clock.sync()
    per_batch = (time.perf_counter() - t0) / args.steps
    total, embed = n_params
    tokens = args.logits_batch * (args.prompt_tokens + args.summary_tokens)
    head = args.logits_batch * args.summary_tokens
    flop = 2 * ((total - embed) * tokens + embed * head)
    attached = [{**e, "teacher": r} for e, r in zip(timed, rows, strict=True)]
    return attached, _row("logit extraction", tokens, per_batch, flop, peak, args.device, "2N forward")


def bench_kd(
    args: argparse.Namespace, student: Any, rows: list[dict], n_params: tuple[int, int], peak: float | None
) -> dict:
    import torch

    from summ_assets.core.kd import collate, sparse_kd_loss
    from summ_assets.core.lm import completion_logits

    batch = {k: v.to(args.device) for k, v in collate(rows[: args.kd_batch], 0).items()}
    if args.gradient_checkpointing:
        student.gradient_checkpointing_enable()
    student.train()
    opt = torch.optim.AdamW(student.parameters(), lr=2e-4)

    def step() -> None:
        logits, targets, _ = completion_logits(
            student, batch["input_ids"], batch["attention_mask"], batch["labels"]
        )
        logq = torch.log_softmax(logits, dim=-1)
        ce = torch.nn.functional.nll_loss(logq, targets)
        kd = sparse_kd_loss(
            logits, batch["teacher_ids"], batch["teacher_logprobs"], batch["teacher_tail"], student_logq=logq
        )
        (0.5 * kd + 0.5 * ce).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    _free(args.device)
    times = Clock(args.device).run(step, args.warmup, args.steps)
    s = sorted(times)[len(times) // 2]
    total, embed = n_params
    tokens = args.kd_batch * (args.prompt_tokens + args.summary_tokens)
    head = args.kd_batch * args.summary_tokens
    flop = 6 * ((total - embed) * tokens + embed * head)
    student.eval()
    return _row("KD step (student, full)", tokens, s, flop, peak, args.device, "6N training")


def bench_generation(
    args: argparse.Namespace, student: Any, n_params: tuple[int, int], peak: float | None
) -> dict:
    import torch

    vocab = ARCHS[args.student]["vocab_size"]
    g = torch.Generator().manual_seed(2)
    prompts = torch.randint(10, vocab, (args.gen_batch, args.prompt_tokens), generator=g).to(args.device)

    def gen() -> None:
        with torch.no_grad():
            student.generate(
                input_ids=prompts,
                attention_mask=torch.ones_like(prompts),
                max_new_tokens=args.new_tokens,
                min_new_tokens=args.new_tokens,
                do_sample=False,
                pad_token_id=0,
            )

    _free(args.device)
    times = Clock(args.device).run(gen, min(args.warmup, 1), max(1, args.steps // 2))
    s = sorted(times)[len(times) // 2]
    total, embed = n_params
    new = args.gen_batch * args.new_tokens
    flop = 2 * ((total - embed) * args.gen_batch * (args.prompt_tokens + args.new_tokens) + embed * new)
    row = _row("generation (student)", new, s, flop, peak, args.device, "2N, prefill incl.")
    row["step_s"] = s / args.new_tokens  # per decoding step (batch)
    return row


# ---------------------------------------------------------------------------- memory / time plan


def memory_plan(args: argparse.Namespace) -> list[tuple[str, float, str]]:
    """(stage, estimated GiB, how) per configuration: weights, trainable state, activations, logits."""
    s = args.prompt_tokens + args.summary_tokens
    gib = 2**30
    out = []
    for arch, role in ((args.teacher, "teacher"), (args.student, "student")):
        d = ARCHS[arch]
        total, embed = param_counts(arch)
        h, i, a, layers, v = (
            d["hidden_size"],
            d["intermediate_size"],
            d["num_attention_heads"],
            d["num_hidden_layers"],
            d["vocab_size"],
        )
        # activations kept for backward per token per layer (bf16): ~12h + 4i values + eager attention
        # scores/softcapped/probs (3 a s); with checkpointing: the layer input (h) per layer + one layer
        act_tok_layer = 2 * (12 * h + 4 * i) + 3 * 2 * a * s
        act = act_tok_layer * layers * s
        act_ckpt = 2 * h * layers * s + act_tok_layer * s
        logits = args.summary_tokens * v * 4 * 3  # fp32 logits, log-softmax, grad (summary positions only)
        kv_tok = 2 * d["num_key_value_heads"] * d["head_dim"] * 2 * layers
        w16 = 2 * total
        if role == "teacher":
            lora = lora_params(arch) * 16  # fp32 adapter + grad + 2 Adam states
            w4 = (total - embed) * 0.53 + 2 * embed  # NF4 linear layers (+ scales), bf16 embedding
            b = args.lora_batch
            out += [
                (
                    f"teacher LoRA, bf16, batch {b}",
                    (w16 + lora + b * (act + logits)) / gib,
                    "no checkpointing",
                ),
                (
                    f"teacher LoRA, bf16, batch {b}, grad. checkpointing",
                    (w16 + lora + b * (act_ckpt + logits)) / gib,
                    "",
                ),
                (
                    f"teacher QLoRA (4-bit), batch {b}",
                    (w4 + lora + b * (act + logits)) / gib,
                    "no checkpointing",
                ),
                (
                    f"teacher QLoRA (4-bit), batch {b}, grad. checkpointing",
                    (w4 + lora + b * (act_ckpt + logits)) / gib,
                    "",
                ),
                (
                    f"logit extraction, bf16, batch {args.logits_batch}",
                    (
                        w16
                        + args.logits_batch * (2 * s * (i * 3 + 3 * a * s) + args.summary_tokens * v * 4 * 2)
                    )
                    / gib,
                    "inference",
                ),
                (
                    f"teacher generation, bf16, batch {args.gen_batch}",
                    (w16 + args.gen_batch * (args.prompt_tokens + args.new_tokens) * kv_tok) / gib,
                    "KV cache",
                ),
            ]
        else:
            b = args.kd_batch
            full = total * 8  # bf16 weights + grads + 2 AdamW states (the Trainer on a bf16 model)
            frozen = 2 * total + (total - embed) * 6
            out += [
                (f"student KD, full, batch {b}", (full + b * (act + logits)) / gib, "no checkpointing"),
                (
                    f"student KD, frozen embeddings + checkpointing, batch {b}",
                    (frozen + b * (act_ckpt + logits)) / gib,
                    "",
                ),
                (
                    f"student generation, bf16, batch {args.gen_batch}",
                    (w16 + args.gen_batch * (args.prompt_tokens + args.new_tokens) * kv_tok) / gib,
                    "KV cache",
                ),
            ]
    return [(name, g * 1.1 + 1.0, how) for name, g, how in out]  # +10 % allocator slack, +1 GiB CUDA context


def time_plan(args: argparse.Namespace) -> list[tuple[str, float]]:
    """Seconds per stage on one H100 SXM at `args.mfu` (FLOP-bound) / HBM bandwidth (decoding)."""
    t_total, t_embed = param_counts(args.teacher)
    s_total, s_embed = param_counts(args.student)
    tok, head = args.avg_tokens, args.summary_tokens
    rate = args.mfu * 989e12
    n, ep = args.train_examples, 3

    def fl(c: float, total: int, embed: int) -> float:
        return c * ((total - embed) * tok + embed * head)

    decode_step = lambda total: 2 * total / (H100_SXM_TBPS * 1e12)  # noqa: E731  weights read once per step
    gen_batches = math.ceil(args.eval_examples / args.gen_batch)
    return [
        (f"teacher LoRA, {ep} epochs x {n} examples", ep * n * fl(4, t_total, t_embed) / rate),
        (f"logit extraction, {n} examples", n * fl(2, t_total, t_embed) / rate),
        (f"student KD, {ep} epochs", ep * n * fl(6, s_total, s_embed) / rate),
        (f"student CE baseline, {ep} epochs", ep * n * fl(6, s_total, s_embed) / rate),
        (
            f"generation, {args.eval_examples} eval examples x (teacher + 3 students)",
            gen_batches * args.new_tokens * (decode_step(t_total) + 3 * decode_step(s_total)),
        ),
    ]


def _verdict(need_gib: float, card_gib: float) -> str:
    return " yes" if need_gib <= 0.9 * card_gib else "tght" if need_gib <= card_gib else "  no"


def print_plan(args: argparse.Namespace) -> None:
    print("# memory plan (ESTIMATES from parameter counts and activation formulas; not measured on a GPU)")
    print(
        f"# sequence {args.prompt_tokens}+{args.summary_tokens} tokens; teacher {args.teacher}, student {args.student}"
    )
    print(f"{'stage':58s} {'GiB':>6s}  24GB  40GB  80GB  note  (tght: fits with < 10 % to spare)")
    for name, g, how in memory_plan(args):
        fits = "  ".join(_verdict(g, cap * 1e9 / 2**30) for cap in (24, 40, 80))
        print(f"{name:58s} {g:6.1f}  {fits}  {how}")
    print(
        f"\n# time plan (ESTIMATE: one H100 SXM at {args.mfu:.0%} MFU, {args.avg_tokens} tokens/example; not measured)"
    )
    total = 0.0
    for name, sec in time_plan(args):
        total += sec
        print(f"{name:58s} {sec / 60:6.1f} min")
    print(f"{'total (compute only; + model loading, eval metrics)':58s} {total / 60:6.1f} min")


# ---------------------------------------------------------------------------- main


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.1%}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--teacher", default="gemma-2-9b", choices=sorted(ARCHS))
    ap.add_argument("--student", default="gemma-2-2b", choices=sorted(ARCHS))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--prompt-tokens", type=int, default=1024)
    ap.add_argument("--summary-tokens", type=int, default=128)
    ap.add_argument("--lora-batch", type=int, default=2)
    ap.add_argument("--logits-batch", type=int, default=4)
    ap.add_argument("--kd-batch", type=int, default=2)
    ap.add_argument("--gen-batch", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument(
        "--peak-tflops", type=float, default=None, help="dense bf16 peak of a card not in the table"
    )
    ap.add_argument("--stages", default="lora,logits,kd,gen")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads for --device cpu (0 = all)")
    ap.add_argument("--plan", action="store_true", help="print the memory/time estimates and exit")
    ap.add_argument("--avg-tokens", type=int, default=600, help="--plan: mean tokens per example")
    ap.add_argument("--mfu", type=float, default=0.4, help="--plan: assumed MFU")
    ap.add_argument("--train-examples", type=int, default=1000)
    ap.add_argument("--eval-examples", type=int, default=400)
    args = ap.parse_args(argv)

    if args.plan:
        print_plan(args)
        return 0
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            "skipped: no GPU (torch.cuda.is_available() is False); GPU figures are not measured here. "
            "`--plan` prints the memory/time estimates."
        )
        return 0
    stages = set(args.stages.split(","))
    if args.device.startswith("cuda"):
        name = torch.cuda.get_device_name(0)
        peak = args.peak_tflops or peak_tflops(name)
        dtype = torch.bfloat16
    else:
        name, peak, dtype = "cpu", args.peak_tflops, torch.float32
        if args.threads:
            torch.set_num_threads(args.threads)
    print(
        f"device: {name}; bf16 peak {peak or 'unknown (pass --peak-tflops)'} TFLOP/s; "
        f"teacher {args.teacher}, student {args.student}; {args.prompt_tokens}+{args.summary_tokens} tokens"
    )
    rows: list[dict] = []
    t_params, s_params = param_counts(args.teacher), param_counts(args.student)
    cache_rows: list = []
    teacher = build(args.teacher, args.device, dtype)
    if "lora" in stages:
        teacher, row = bench_lora(args, teacher, t_params, peak)
        rows.append(row)
    if "logits" in stages or "kd" in stages:
        cache_rows, row = bench_logits(args, teacher, t_params, peak)
        if "logits" in stages:
            rows.append(row)
    del teacher
    _free(args.device)
    student = build(args.student, args.device, dtype)
    if "kd" in stages:
        rows.append(bench_kd(args, student, cache_rows, s_params, peak))
    if "gen" in stages:
        rows.append(bench_generation(args, student, s_params, peak))
    for r in rows:
        print(
            f"{r['stage']}: {r['tokens_per_s']:.0f} tokens/s, step {r['step_s']:.4f} s, "
            f"{r['tflops']:.1f} TFLOP/s, MFU {_pct(r['mfu'])}, peak memory {r['peak_gib']:.1f} GiB ({r['flop_model']})"
        )
    print("\n| stage | tokens/s | step s | TFLOP/s | MFU | peak GiB | FLOPs |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['stage']} | {r['tokens_per_s']:.0f} | {r['step_s']:.4f} | {r['tflops']:.1f} | "
            f"{_pct(r['mfu'])} | {r['peak_gib']:.1f} | {r['flop_model']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
