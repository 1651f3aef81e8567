"""The shipped student against its teacher, side by side in one run: size, decode speed, step cost.

Reuses what `make demo` left in artifacts/. Prints, for the demo teacher (merged LoRA), the shipped
student (`student_model`: pruned + trimmed vocabulary) and the old student shape (the pruned base with
the full vocabulary, `student_base`):
- parameters and their ratio to the teacher's;
- decode tokens/s with forced length (min = max new tokens) at batch 1 and batch 8, real val prompts,
  median of ``--runs`` runs, each run measuring every model back to back (so machine drift hits all):
  decode-only (the steps after the first token, prefill apart) and end-to-end (prefill included);
- one KD training step (alpha 0.5, cached teacher targets) and one CE step, forward + backward on the
  same 4 training examples, median of 3, for the shipped student and the old full-vocabulary shape.

    .venv/bin/python -m benchmarks.bench_small_student --runs 3 --tokens 32
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

from summ_assets.core.offline import use_offline_env


def _decode(
    model: object, tok: object, texts: list[str], profile: object, batch: int, tokens: int
) -> dict[str, float]:
    """`forced_decode_speed`: decode-only tokens/s (prefill apart), end-to-end tokens/s, prefill s."""
    from summ_assets.core.generation_store import forced_decode_speed

    p = replace(profile, eval=replace(profile.eval, speed_batch=batch, speed_tokens=tokens))
    return forced_decode_speed(model, tok, texts, p)


def _step_seconds(model: object, batch: dict, alpha: float) -> float:
    import torch
    import torch.nn.functional as F

    from summ_assets.core.kd import sparse_kd_loss
    from summ_assets.core.lm import completion_logits

    times = []
    model.train()
    for _ in range(3):
        t0 = time.perf_counter()
        logits, targets, _ = completion_logits(
            model, batch["input_ids"], batch["attention_mask"], batch["labels"]
        )
        logq = torch.log_softmax(logits, -1)
        loss = F.nll_loss(logq, targets)
        if alpha > 0:
            kd = sparse_kd_loss(
                logits,
                batch["teacher_ids"],
                batch["teacher_logprobs"],
                batch["teacher_tail"],
                student_logq=logq,
            )
            loss = alpha * kd + (1 - alpha) * loss
        loss.backward()
        model.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    model.eval()
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    use_offline_env()
    import torch
    from transformers import AutoTokenizer

    from summ_assets.core import logits_cache as lc
    from summ_assets.core.dataset import read_split
    from summ_assets.core.examples import build_examples
    from summ_assets.core.kd import attach_teacher, collate
    from summ_assets.core.lm import set_threads
    from summ_assets.core.models import count_parameters, load_causal_lm
    from summ_assets.core.profiles import get_profile
    from summ_assets.core.vocab import CHUNK_TOKENIZER, MAP_FILE, KeptVocab, in_student_ids, map_cache

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--artifacts", default="artifacts")
    args = ap.parse_args(argv)
    io = Path(args.artifacts) / "_dagster_io"
    if not (io / "student_model").exists():
        print("run `make demo` first (no artifacts/_dagster_io/student_model)", file=sys.stderr)
        return 2
    load = lambda name: pickle.loads((io / name).read_bytes())  # noqa: E731
    profile = get_profile()
    set_threads(profile.threads)
    paths = {
        "teacher": load("teacher_adapter")["merged"],
        "student": load("student_model")["path"],
        "full-vocab student shape": load("student_base")["path"],
    }
    dataset = load("summary_dataset")
    texts = [r["text"] for r in read_split(dataset, "val")][:8]
    models = {n: (load_causal_lm(p), AutoTokenizer.from_pretrained(p)) for n, p in paths.items()}
    params = {n: count_parameters(m) for n, (m, _) in models.items()}
    speed: dict[tuple[str, int, str], list[float]] = {}
    for run in range(args.runs):
        for name, (model, tok) in models.items():
            for batch in (1, 8):
                got = _decode(model, tok, texts, profile, batch, args.tokens)
                for key in ("tokens_per_s", "end_to_end_tokens_per_s", "prefill_seconds"):
                    speed.setdefault((name, batch, key), []).append(got[key])
        print(f"run {run + 1}/{args.runs} done", flush=True)
    med = lambda name, batch, key: statistics.median(speed[(name, batch, key)])  # noqa: E731
    print(
        f"\nforced {args.tokens} new tokens, real val prompts (whole sections), median of {args.runs} runs, "
        "each run measuring every model back to back. decode = the steps after the first token (prefill "
        "apart); end-to-end = all tokens over the whole call, prefill included"
    )
    print(
        f"{'model':>26} {'parameters':>11} {'vs teacher':>10} {'decode b1':>9} {'decode b8':>9} "
        f"{'b8 vs teacher':>13} {'e2e b8':>7} {'e2e vs teacher':>14} {'prefill b8':>10}"
    )
    for name in models:
        b1, b8 = med(name, 1, "tokens_per_s"), med(name, 8, "tokens_per_s")
        e8 = med(name, 8, "end_to_end_tokens_per_s")
        print(
            f"{name:>26} {params[name] / 1e6:10.1f}M {params[name] / params['teacher']:9.0%} "
            f"{b1:9.1f} {b8:9.1f} {b8 / med('teacher', 8, 'tokens_per_s'):12.2f}x {e8:7.1f} "
            f"{e8 / med('teacher', 8, 'end_to_end_tokens_per_s'):13.2f}x {med(name, 8, 'prefill_seconds'):9.2f}s"
        )
    # one KD step and one CE step on the same 4 training examples
    t_logits = load("teacher_logits")
    spec = lc.CacheSpec.from_metadata(t_logits["spec"])
    train_rows = read_split(dataset, "train")[:4]
    print("\ntraining step (forward + backward, batch 4, median of 3)")
    for name in ("student", "full-vocab student shape"):
        folder = Path(paths[name])
        kept = KeptVocab.load(folder) if (folder / MAP_FILE).exists() else None
        full_tok = AutoTokenizer.from_pretrained(folder / CHUNK_TOKENIZER if kept else folder)
        ex = build_examples(
            train_rows, full_tok, profile.data.max_prompt_tokens, profile.data.max_summary_tokens
        )
        cache = lc.load(Path(t_logits["path"]), spec, {e["example_key"] for e in ex})
        if kept:
            ex, _ = in_student_ids(ex, kept)
            cache = map_cache(cache, kept)
        batch = collate(attach_teacher(ex, cache), full_tok.pad_token_id or 0)
        model = models[name][0]
        for p in model.parameters():
            p.requires_grad_(True)
        kd, ce = _step_seconds(model, batch, 0.5), _step_seconds(model, batch, 0.0)
        print(f"{name:>26}: KD step {kd:.2f} s, CE step {ce:.2f} s, KD/CE {kd / ce:.2f}x")
    del torch
    return 0


if __name__ == "__main__":
    sys.exit(main())
