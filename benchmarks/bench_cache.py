"""Teacher-logit cache: bytes per token, fidelity to the full distribution, and cost of writing.

Usage:
    .venv/bin/python benchmarks/bench_cache.py [--teacher DIR --student DIR] [--examples 16] [--batch-size 4]

Default models: the tiny teacher/student (built as the tests do). For the demo models pass
``--teacher artifacts/teacher_adapter/<key>/merged --student artifacts/student_base/pruned-<key>``.

For every cache setting — topk k in {8, 16, 32, 64} (+ tail bucket) and sampled N in {16, 32, 64} —
on the same teacher-forced summary positions:
- bytes/token: the shard written by `core.logits_cache.write_shard` (int32 ids, float16 log-probs,
  zstd), divided by the number of summary positions;
- KL(full || cached) per token, where the cached distribution is expanded back to the vocabulary
  (stored ids exact, tail mass spread uniformly over the other ids; sampled: counts/N, nothing else);
- gradient angle: the angle between d(loss)/d(student logits) under full-vocabulary forward KL and
  under the sparse loss the product trains with (`core.kd.sparse_kd_loss`), mean over positions;
- capture: teacher forward tokens/s and the time to build + write the targets relative to the forward.
Prints one line per figure.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from summ_assets.core.offline import use_offline_env  # noqa: E402

use_offline_env()

from benchmarks.bench_kd import build_tiny, corpus_rows, select_examples  # noqa: E402


def expand(ids, lp, tail, vocab: int):
    """Cached sparse target -> full [N, V] log distribution (uniform tail over unstored ids)."""
    import torch

    n = ids.shape[0]
    valid = ids >= 0
    probs = torch.zeros(n, vocab)
    probs.scatter_add_(
        1, ids.clamp(min=0), torch.where(valid, lp.float().exp(), torch.zeros_like(lp.float()))
    )
    tail_mass = torch.where(torch.isfinite(tail), tail.exp(), torch.zeros_like(tail))
    n_other = (vocab - valid.sum(-1)).clamp(min=1)
    other = (probs == 0).float()
    probs += other * (tail_mass / n_other).unsqueeze(-1)
    return probs.clamp(min=1e-30).log()


def main() -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from summ_assets.core import logits_cache as lc
    from summ_assets.core.examples import build_examples
    from summ_assets.core.kd import dense_kd_loss, sparse_kd_loss
    from summ_assets.core.lm import completion_logits, pad_batch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", type=Path)
    ap.add_argument("--student", type=Path)
    ap.add_argument("--examples", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    if args.teacher is None:
        args.teacher, args.student = build_tiny(tmp)
    tok = AutoTokenizer.from_pretrained(args.teacher)
    teacher = AutoModelForCausalLM.from_pretrained(args.teacher, dtype=torch.float32).eval()
    student = AutoModelForCausalLM.from_pretrained(args.student, dtype=torch.float32).eval()
    examples = select_examples(build_examples(corpus_rows(tok), tok, 96, 40), args.examples)
    print(
        f"models: teacher {args.teacher.name} / student {args.student.name}; vocab {len(tok)}; "
        f"{len(examples)} examples; threads {args.threads}"
    )

    # one teacher-forced pass: full log-probs at every summary position, timed
    full, s_logits, fwd_s, n_tokens = [], [], 0.0, 0
    for i in range(0, len(examples), args.batch_size):
        b = pad_batch(examples[i : i + args.batch_size], tok.pad_token_id)
        with torch.no_grad():
            t0 = time.perf_counter()
            logits, _, _ = completion_logits(teacher, b["input_ids"], b["attention_mask"], b["labels"])
            lp = torch.log_softmax(logits.float(), -1)
            fwd_s += time.perf_counter() - t0
            n_tokens += int(b["attention_mask"].sum())
            s, _, _ = completion_logits(student, b["input_ids"], b["attention_mask"], b["labels"])
        full.append(lp)
        s_logits.append(s)
    full_lp = torch.cat(full)
    student_logits = torch.cat(s_logits).float()
    positions = full_lp.shape[0]
    vocab = full_lp.shape[1]
    print(f"teacher_forward: {n_tokens / fwd_s:.1f} tokens/s ({positions} summary positions, {fwd_s:.2f} s)")

    sl = student_logits.clone().requires_grad_(True)
    dense_kd_loss(sl, full_lp).backward()
    g_dense = sl.grad.clone()

    settings = [("topk", k, 0) for k in (8, 16, 32, 64)] + [("sampled", 0, n) for n in (16, 32, 64)]
    gen = torch.Generator().manual_seed(0)
    for mode, k, n in settings:
        spec = lc.CacheSpec(mode, k, n, "bench", "tok", "tpl")
        t0 = time.perf_counter()
        ids, lp, tail = lc.sparse_targets(full_lp, mode, k, n, gen)
        rows, off = [], 0
        for ex in examples:
            m = len(ex["input_ids"]) - ex["completion_start"]
            sel = slice(off, off + m)
            keep = [r >= 0 for r in ids[sel]]
            rows.append(
                {
                    "example_key": ex["example_key"],
                    "section_id": ex["section_id"],
                    "input_ids": ex["input_ids"],
                    "positions": list(range(ex["completion_start"], len(ex["input_ids"]))),
                    "target_ids": ex["input_ids"][ex["completion_start"] :],
                    "token_ids": [r[mk].tolist() for r, mk in zip(ids[sel], keep, strict=True)],
                    "logprobs": [r[mk].tolist() for r, mk in zip(lp[sel], keep, strict=True)],
                    "tail_logprob": tail[sel].tolist(),
                }
            )
            off += m
        size = lc.write_shard(rows, tmp / f"part-{mode}-{k}-{n}.parquet", spec)
        write_s = time.perf_counter() - t0
        # fidelity, from the stored (float16) values
        back = lc.load(tmp, None)
        width = ids.shape[1]
        stored_lp = torch.tensor(
            [
                x + [float("-inf")] * (width - len(x))
                for ex in examples
                for x in back[ex["example_key"]]["logprobs"]
            ]
        )
        for p in tmp.glob("part-*.parquet"):
            p.unlink()
        ids_f = torch.where(torch.isfinite(stored_lp), ids, torch.full_like(ids, -1))
        cached = expand(ids_f, stored_lp, tail, vocab)
        p = full_lp.exp()
        kl = (p * (full_lp - cached)).sum(-1).mean().item()
        sl = student_logits.clone().requires_grad_(True)
        sparse_kd_loss(sl, ids_f, stored_lp, tail).backward()
        g = sl.grad
        cos = torch.nn.functional.cosine_similarity(g, g_dense, dim=-1).clamp(-1, 1)
        angle = torch.rad2deg(torch.acos(cos)).mean().item()
        label = f"topk k={k}" if mode == "topk" else f"sampled N={n}"
        print(
            f"{label}: {size / positions:.1f} bytes/token, KL(full||cached) {kl:.4f} nats/token, "
            f"gradient angle {angle:.1f} deg, write {100 * write_s / fwd_s:.1f}% of forward "
            f"(mean stored ids {(ids_f >= 0).sum().item() / positions:.1f})"
        )


if __name__ == "__main__":
    main()
