"""Cost of distillation: KD vs CE training step (time, memory) and student vs teacher generation speed.

Usage:
    .venv/bin/python benchmarks/bench_kd.py [--teacher DIR --student DIR] [--k 32] [--mode topk|sampled]
        [--batch-size 4] [--max-prompt-tokens 96] [--max-summary-tokens 40] [--warmup 2] [--steps 10]
        [--gen-batch 8] [--gen-batches 1] [--max-new-tokens 32] [--threads N] [--device auto] [--dtype float32]

Without --teacher/--student the tiny teacher and student are built in a temporary folder exactly as
the tests do (tokenizer trained on 12 bundled documents). For the demo models pass e.g.
``--teacher artifacts/teacher_adapter/<key>/merged --student artifacts/student_base/pruned-<key>``.

Data: sections of the bundled corpus (data/raw, split with the student tokenizer) paired with their
reference summaries from data/labels (first sentence where a section has none), tokenized with the
product's prompt format (`core.examples.build_examples`); the longest examples are used so that every
sequence is close to max-prompt-tokens + template + max-summary-tokens. Teacher targets are captured
once with the product's `core.logits_cache.capture` (mode/k as given) and collated with `core.kd.collate`.

(a) Step time. One student, one AdamW optimizer (the Trainer's own, `create_optimizer`), the same
    batches. A step is `DistillationTrainer.compute_loss` (core.lm.completion_logits + CE, plus
    core.kd.sparse_kd_loss when KD) + backward + optimizer.step + zero_grad; the KD step uses alpha
    (0.5) and cached targets, the CE step is the same trainer with alpha = 0 and no teacher tensors
    (what the product's CE baseline runs). Steps alternate KD/CE (the order flips every iteration) on
    the same batch, warm-up iterations are dropped, and the medians are compared.
(b) Peak memory. GPU: torch.cuda.max_memory_allocated over measured steps of one mode (after warm-up,
    so the optimizer state already exists), absolute and above what was allocated before the step.
    CPU: a fresh subprocess per mode loads the student and the saved batches, records its resident set
    (VmRSS), resets the kernel's high-water mark (/proc/self/clear_refs 5; falls back to ru_maxrss)
    and runs warm-up + measured steps of that mode only; "step_delta" = peak RSS (VmHWM) minus the
    RSS before the first step, i.e. what training adds on top of the loaded model: gradients, AdamW
    state, activations, loss temporaries and allocator slack. RSS is what the machine must provide;
    it is coarser than an allocator count (freed memory kept by malloc still counts).
(c) Generation. The same prompts (product prompt format, left padding, batch 8) through student and
    teacher, greedy, max_new_tokens == min_new_tokens so both produce exactly the same number of
    tokens; rounds alternate student/teacher after a warm-up; tokens/s = generated tokens / wall time.

Prints one line per figure: ``<name>: <value> <unit>``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from summ_assets.core.offline import use_offline_env  # noqa: E402

use_offline_env()


# ---------------------------------------------------------------------------- models and data


def build_tiny(tmp: Path) -> tuple[Path, Path]:
    from summ_assets.core.models import build_tiny_model, train_tiny_tokenizer

    texts = [p.read_text(encoding="utf-8") for p in sorted((REPO / "data" / "raw").glob("*.md"))[:12]]
    train_tiny_tokenizer(texts, tmp / "tok")
    build_tiny_model("teacher", tmp / "tok", tmp / "teacher")
    build_tiny_model("student", tmp / "tok", tmp / "student")
    return tmp / "teacher", tmp / "student"


def corpus_rows(tokenizer: Any) -> list[dict[str, Any]]:
    """Sections of data/raw with their reference summary (or their first sentence)."""
    from summ_assets.core.chunking import TokenCounter, split_markdown

    labels: dict[tuple[str, str], str] = {}
    for f in sorted((REPO / "data" / "labels").glob("*.jsonl")):
        for line in f.read_text(encoding="utf-8").splitlines():
            if line.strip():
                r = json.loads(line)
                labels.setdefault((r["doc"], r["heading_path"]), r["summary"])
    counter = TokenCounter(tokenizer)
    rows = []
    for path in sorted((REPO / "data" / "raw").glob("*.md")):
        rel = f"raw/{path.name}"
        doc = split_markdown(path.read_text(encoding="utf-8"), counter, doc_id=rel, max_tokens=384)
        for s in doc.sections:
            body = s.text.strip()
            if not body:
                continue
            summary = labels.get((rel, s.heading_path)) or re.split(r"(?<=[.?!])\s", body, maxsplit=1)[0]
            rows.append({"section_id": s.section_id, "text": s.text, "summary": summary})
    return rows


def select_examples(examples: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """The n longest (deterministic): sequences near the prompt + summary budget."""
    order = sorted(range(len(examples)), key=lambda i: (-len(examples[i]["input_ids"]), i))
    if len(order) < n:
        raise SystemExit(f"only {len(order)} examples in the corpus, {n} requested")
    return [examples[i] for i in order[:n]]


def resolve_device(name: str) -> str:
    from summ_assets.core.models import resolve_device as rd

    return rd(name)


def load_model(path: Path, dtype: str, device: str) -> Any:
    from summ_assets.core.models import load_causal_lm

    return load_causal_lm(path, dtype, device)


def param_count(model: Any) -> str:
    n = sum(p.numel() for p in model.parameters())
    return (
        f"{n / 1e6:.2f}M params, {model.config.num_hidden_layers} layers, hidden {model.config.hidden_size}"
    )


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


# ---------------------------------------------------------------------------- training step


def make_trainer(student_dir: Path, args: argparse.Namespace, device: str, tmp: Path) -> tuple[Any, Any, Any]:
    """(model, trainer, optimizer) set up as `core.kd.train_student` does (full fine-tuning)."""
    import torch
    from transformers import TrainingArguments

    from summ_assets.core.kd import _trainer_cls, freeze_embeddings

    torch.manual_seed(args.seed)
    model = load_model(student_dir, args.dtype, device)
    if args.freeze_embeddings:
        freeze_embeddings(model)
    targs = TrainingArguments(
        output_dir=str(tmp / "trainer"),
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr,
        bf16=args.dtype == "bfloat16" and device == "cuda",
        use_cpu=device == "cpu",
        remove_unused_columns=False,
        report_to="none",
        seed=args.seed,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    trainer = _trainer_cls()(
        model=model,
        args=targs,
        alpha=args.alpha,
        temperature=args.temperature,
        divergence=args.divergence,
    )
    optimizer = trainer.create_optimizer()
    model.train()
    return model, trainer, optimizer


CE_KEYS = ("input_ids", "attention_mask", "labels")


def train_step(
    model: Any, trainer: Any, optimizer: Any, batch: dict[str, Any], kd: bool, alpha: float
) -> None:
    trainer.alpha = alpha if kd else 0.0
    inputs = batch if kd else {k: batch[k] for k in CE_KEYS}
    with trainer.compute_loss_context_manager():
        loss = trainer.compute_loss(model, inputs)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def timed_step(model, trainer, optimizer, batch, kd, alpha, device) -> float:
    sync(device)
    t0 = time.perf_counter()
    train_step(model, trainer, optimizer, batch, kd, alpha)
    sync(device)
    return time.perf_counter() - t0


def _proc_status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS", "VmHWM")):
                key, val = line.split(":")
                out[key] = int(val.split()[0]) * 1024
    return out


def memory_child(args: argparse.Namespace) -> None:
    """Subprocess: one mode only, report peak RSS of its training steps as JSON on stdout."""
    import torch

    torch.set_num_threads(args.threads)
    kd = args.memory_child == "kd"
    with tempfile.TemporaryDirectory(prefix="bench-kd-mem-") as tmp:
        model, trainer, optimizer = make_trainer(args.student, args, "cpu", Path(tmp))
        batches = torch.load(args.batches_file)
        before = _proc_status()["VmRSS"]
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            method = "VmHWM after clear_refs"
        except OSError:
            method = "ru_maxrss (lifetime peak: may be the model-load peak)"
        for i in range(args.warmup + args.memory_steps):
            train_step(model, trainer, optimizer, batches[i % len(batches)], kd, args.alpha)
        if method.startswith("VmHWM"):
            peak = _proc_status()["VmHWM"]
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"rss_before": before, "peak": peak, "method": method}))


def cpu_memory(args: argparse.Namespace, batches: list[dict[str, Any]], tmp: Path) -> dict[str, dict]:
    import torch

    path = tmp / "batches.pt"
    torch.save(batches, path)
    out = {}
    for mode in ("ce", "kd"):
        cmd = [
            sys.executable,
            __file__,
            "--memory-child",
            mode,
            "--batches-file",
            str(path),
            "--student",
            str(args.student),
            "--dtype",
            args.dtype,
            "--threads",
            str(args.threads),
            "--lr",
            str(args.lr),
            "--alpha",
            str(args.alpha),
            "--temperature",
            str(args.temperature),
            "--divergence",
            args.divergence,
            "--warmup",
            str(args.warmup),
            "--memory-steps",
            str(args.memory_steps),
            "--batch-size",
            str(args.batch_size),
            "--seed",
            str(args.seed),
        ]
        if not args.freeze_embeddings:
            cmd.append("--no-freeze-embeddings")
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise SystemExit(f"memory subprocess ({mode}) failed:\n{res.stderr[-3000:]}")
        out[mode] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


def gpu_memory(model, trainer, optimizer, batches, args) -> dict[str, dict]:
    import torch

    out = {}
    for kd in (False, True):  # optimizer state and allocator pools exist before anything is measured
        train_step(model, trainer, optimizer, batches[0], kd, args.alpha)
    for mode in ("ce", "kd"):
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        for i in range(args.memory_steps):
            train_step(model, trainer, optimizer, batches[i % len(batches)], mode == "kd", args.alpha)
        torch.cuda.synchronize()
        out[mode] = {
            "rss_before": before,
            "peak": torch.cuda.max_memory_allocated(),
            "method": "cuda allocated",
        }
    return out


# ---------------------------------------------------------------------------- generation


def encode_prompts(tokenizer: Any, texts: list[str], max_prompt_tokens: int, device: str) -> Any:
    """Same prompt format and padding as core.decoding.summarize_texts."""
    from summ_assets.core.prompts import prompt_messages

    old = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        convs = [prompt_messages(t, tokenizer, max_prompt_tokens) for t in texts]
        return tokenizer.apply_chat_template(
            convs, add_generation_prompt=True, return_tensors="pt", return_dict=True, padding=True
        ).to(device)
    finally:
        tokenizer.padding_side = old


def generate_fixed(model: Any, tokenizer: Any, enc: Any, n_new: int, device: str) -> tuple[int, float]:
    import torch

    sync(device)
    t0 = time.perf_counter()
    with torch.no_grad():
        out = model.generate(
            **enc,
            max_new_tokens=n_new,
            min_new_tokens=n_new,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=model.generation_config.eos_token_id,
        )
    sync(device)
    dt = time.perf_counter() - t0
    new = out.shape[1] - enc["input_ids"].shape[1]
    if new != n_new:
        raise AssertionError(f"generated {new} tokens, expected exactly {n_new}")
    return out.shape[0] * new, dt


# ---------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", type=Path, default=None, help="teacher save_pretrained folder")
    ap.add_argument("--student", type=Path, default=None, help="student save_pretrained folder")
    ap.add_argument("--k", type=int, default=32, help="stored ids per position (topk) (demo: 32)")
    ap.add_argument("--mode", choices=("topk", "sampled"), default="topk")
    ap.add_argument("--n-samples", type=int, default=64, help="draws per position in sampled mode")
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--divergence", default="forward_kl", choices=("forward_kl", "reverse_kl", "jsd"))
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument(
        "--no-freeze-embeddings",
        dest="freeze_embeddings",
        action="store_false",
        help="train the (tied) embeddings too (the demo profile freezes them)",
    )
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--batches", type=int, default=4, help="distinct batches, cycled")
    ap.add_argument("--max-prompt-tokens", type=int, default=96)
    ap.add_argument("--max-summary-tokens", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=2, help="warm-up iterations (KD+CE each), not measured")
    ap.add_argument("--steps", type=int, default=10, help="measured steps per mode")
    ap.add_argument("--memory-steps", type=int, default=2, help="steps per mode for the memory figure")
    ap.add_argument("--gen-batch", type=int, default=8)
    ap.add_argument("--gen-batches", type=int, default=1, help="prompt batches per round")
    ap.add_argument("--gen-rounds", type=int, default=2, help="measured rounds (student/teacher alternate)")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch CPU threads")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-steps", action="store_true", help="skip (a), the step-time comparison")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-generation", action="store_true")
    ap.add_argument("--memory-child", choices=("kd", "ce"), default=None, help=argparse.SUPPRESS)
    ap.add_argument("--batches-file", type=Path, default=None, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main() -> None:
    args = parse_args()
    if args.memory_child:
        memory_child(args)
        return

    import torch
    from transformers import AutoTokenizer

    from summ_assets.core.examples import build_examples
    from summ_assets.core.kd import attach_teacher, collate, sparse_kd_loss
    from summ_assets.core.logits_cache import CacheSpec, capture
    from summ_assets.core.models import tokenizer_fingerprint

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory(prefix="bench-kd-") as tmp_s:
        tmp = Path(tmp_s)
        if (args.teacher is None) != (args.student is None):
            raise SystemExit("pass both --teacher and --student, or neither (tiny models)")
        models_name = "custom"
        if args.teacher is None:
            args.teacher, args.student = build_tiny(tmp)
            models_name = "tiny (built like the tests)"
        tok = AutoTokenizer.from_pretrained(args.student)
        if tokenizer_fingerprint(tok) != tokenizer_fingerprint(AutoTokenizer.from_pretrained(args.teacher)):
            raise SystemExit("teacher and student tokenizers differ: KD targets would not align")

        # ---- examples + teacher targets (product code: build_examples, capture, attach_teacher, collate)
        n_ex = args.batch_size * args.batches
        corpus = corpus_rows(tok)
        text_by_id = {r["section_id"]: r["text"] for r in corpus}
        examples = build_examples(corpus, tok, args.max_prompt_tokens, args.max_summary_tokens)
        examples = select_examples(examples, max(n_ex, args.gen_batch * args.gen_batches))
        train_ex = examples[:n_ex]
        teacher = load_model(args.teacher, args.dtype, device)
        spec = CacheSpec(args.mode, args.k, args.n_samples, "bench", "bench", "bench")
        t0 = time.perf_counter()
        cache_rows = capture(teacher, train_ex, spec, tok.pad_token_id, batch_size=8, seed=args.seed)
        capture_s = time.perf_counter() - t0
        teacher_desc = param_count(teacher)
        del teacher
        rows = attach_teacher(train_ex, {r["example_key"]: r for r in cache_rows})
        batches = [
            {k: v.to(device) for k, v in collate(rows[i : i + args.batch_size], tok.pad_token_id).items()}
            for i in range(0, n_ex, args.batch_size)
        ]
        seq_lens = [len(e["input_ids"]) for e in train_ex]
        positions = [int(b["teacher_ids"].shape[0]) for b in batches]
        stored = sum(int((b["teacher_ids"] >= 0).sum()) for b in batches) / sum(positions)

        model, trainer, optimizer = make_trainer(args.student, args, device, tmp)
        print(
            f"header: device={device}"
            + (f" ({torch.cuda.get_device_name()})" if device == "cuda" else "")
            + f" torch_threads={torch.get_num_threads()} dtype={args.dtype} torch={torch.__version__}"
            + f" cpus={os.cpu_count()} loadavg_1m={os.getloadavg()[0]:.2f}"
        )
        print(f"models: {models_name}; vocab {len(tok)}")
        print(f"teacher: {args.teacher} ({teacher_desc})")
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        print(f"student: {args.student} ({param_count(model)}; {trainable / 1e6:.2f}M trainable)")
        print(
            f"batches: {len(batches)} x {args.batch_size} examples, seq len mean {statistics.mean(seq_lens):.0f} "
            f"(min {min(seq_lens)}, max {max(seq_lens)}), summary positions/batch mean {statistics.mean(positions):.0f}"
        )
        print(
            f"cache: mode={args.mode} k={args.k} (mean {stored:.1f} stored ids/position), "
            f"alpha={args.alpha} T={args.temperature} {args.divergence}; capture {capture_s:.2f} s"
        )

        # ---- (a) step time, alternating KD/CE on the same batch
        if not args.skip_steps:
            kd_t: list[float] = []
            ce_t: list[float] = []
            pair_ratio: list[float] = []
            for it in range(args.warmup + args.steps):
                b = batches[it % len(batches)]
                order = (True, False) if it % 2 == 0 else (False, True)
                times = {kd: timed_step(model, trainer, optimizer, b, kd, args.alpha, device) for kd in order}
                if it >= args.warmup:
                    kd_t.append(times[True])
                    ce_t.append(times[False])
                    pair_ratio.append(times[True] / times[False])
            kd_med, ce_med = statistics.median(kd_t), statistics.median(ce_t)
            print(f"kd_step_median: {kd_med * 1e3:.1f} ms (n={len(kd_t)}, min {min(kd_t) * 1e3:.1f})")
            print(f"ce_step_median: {ce_med * 1e3:.1f} ms (n={len(ce_t)}, min {min(ce_t) * 1e3:.1f})")
            verdict = "OK" if kd_med / ce_med <= 1.10 else "ABOVE TARGET"
            print(f"kd_over_ce_step_ratio: {kd_med / ce_med:.3f}x (target <= 1.10x: {verdict})")
            print(f"kd_over_ce_paired_ratio_median: {statistics.median(pair_ratio):.3f}x")

            # the KD loss term alone (forward + backward on the student's summary logits, no model)
            b = batches[0]
            with torch.no_grad():
                from summ_assets.core.lm import completion_logits

                logits, _, _ = completion_logits(model, b["input_ids"], b["attention_mask"], b["labels"])
            loss_t = []
            for i in range(args.warmup + args.steps):
                leaf = logits.detach().requires_grad_(True)
                sync(device)
                t0 = time.perf_counter()
                sparse_kd_loss(
                    leaf,
                    b["teacher_ids"],
                    b["teacher_logprobs"],
                    b["teacher_tail"],
                    temperature=args.temperature,
                    divergence=args.divergence,
                ).backward()
                sync(device)
                if i >= args.warmup:
                    loss_t.append(time.perf_counter() - t0)
            print(
                f"kd_loss_term_median: {statistics.median(loss_t) * 1e3:.1f} ms "
                f"(sparse_kd_loss fwd+bwd alone on [{logits.shape[0]}, {logits.shape[1]}] logits)"
            )

        # ---- (b) memory
        if not args.skip_memory:
            if device == "cuda":
                mem = gpu_memory(model, trainer, optimizer, batches, args)
            else:
                mem = cpu_memory(args, [{k: v.cpu() for k, v in b.items()} for b in batches], tmp)
            for mode in ("ce", "kd"):
                m = mem[mode]
                print(
                    f"{mode}_step_peak_memory: {m['peak'] / 2**20:.1f} MiB peak, "
                    f"{(m['peak'] - m['rss_before']) / 2**20:.1f} MiB step_delta ({m['method']})"
                )
            d_kd = mem["kd"]["peak"] - mem["kd"]["rss_before"]
            d_ce = mem["ce"]["peak"] - mem["ce"]["rss_before"]
            print(
                f"kd_over_ce_peak_memory: {mem['kd']['peak'] / mem['ce']['peak']:.3f}x peak, "
                f"step_delta {d_kd / max(d_ce, 1):.3f}x ({(d_kd - d_ce) / 2**20:+.1f} MiB)"
            )
        del model, trainer, optimizer

        # ---- (c) generation throughput
        if not args.skip_generation:
            texts = [text_by_id[e["section_id"]] for e in examples[: args.gen_batch * args.gen_batches]]
            encs = [
                encode_prompts(tok, texts[i : i + args.gen_batch], args.max_prompt_tokens, device)
                for i in range(0, len(texts), args.gen_batch)
            ]
            gen_models = {
                "student": load_model(args.student, args.dtype, device),
                "teacher": load_model(args.teacher, args.dtype, device),
            }
            for m in gen_models.values():
                m.eval()
                generate_fixed(m, tok, encs[0], min(4, args.max_new_tokens), device)  # warm-up
            tot = {name: [0, 0.0] for name in gen_models}
            for rnd in range(args.gen_rounds):
                names = ["student", "teacher"] if rnd % 2 == 0 else ["teacher", "student"]
                for name in names:
                    for enc in encs:
                        n, dt = generate_fixed(gen_models[name], tok, enc, args.max_new_tokens, device)
                        tot[name][0] += n
                        tot[name][1] += dt
            prompt_len = statistics.mean(int(e["input_ids"].shape[1]) for e in encs)
            print(
                f"generation: greedy, batch {args.gen_batch}, {len(encs)} batch(es) x {args.gen_rounds} rounds, "
                f"prompt len {prompt_len:.0f} (padded), exactly {args.max_new_tokens} new tokens per sequence"
            )
            tps = {name: n / dt for name, (n, dt) in tot.items()}
            print(f"student_tokens_per_s: {tps['student']:.1f} tokens/s ({tot['student'][0]} tokens)")
            print(f"teacher_tokens_per_s: {tps['teacher']:.1f} tokens/s ({tot['teacher'][0]} tokens)")
            print(f"student_over_teacher_generation_speed: {tps['student'] / tps['teacher']:.3f}x")
    print(f"parent_ru_maxrss: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
