"""KD at temperature T from a sparse cache vs dense tempered KD, on real teacher distributions.

Usage:
    .venv/bin/python benchmarks/bench_temperature.py [--artifacts artifacts] [--temperature 2] [--k 32]
        [--examples 16] [--teacher DIR --student DIR]

Models: the newest demo teacher (`artifacts/teacher_adapter/*/merged`) and trained student
(`artifacts/student_model/*`) under --artifacts (run `make demo` first), or --teacher/--student, or
the tiny models when neither is there. The teacher's full-vocabulary log-probs are recomputed at every
summary position of the --examples longest corpus sections (>= 100 positions), then the sparse
top-k loss the product trains with is compared with dense tempered KD (`core.kd.dense_kd_loss`),
three ways, side by side:

- `uniform tail (before)`: a T=1 cache, the tail re-tempered as if spread uniformly over every
  unstored id (the treatment this project shipped before);
- `one bucket`: a T=1 cache, the K+1 buckets re-tempered as K+1 tokens;
- `captured at T (shipped)`: the cache stores softmax(z/T) (`logits_cache.capture` at the student's
  temperature): exact tempered ids and tail.
For each: the relative error of the KD value (|sparse - dense| / dense, mean over positions) and the
gradient angle (d loss / d student logits; mean over positions, and over the whole batch). Then the
shipped treatment for reverse KL and JSD (the student's tail kept) against their dense references.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from summ_assets.core.offline import use_offline_env  # noqa: E402

use_offline_env()

from benchmarks.bench_kd import build_tiny, corpus_rows, select_examples  # noqa: E402


def newest(pattern: str, root: Path) -> Path | None:
    found = sorted(root.glob(pattern), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def uniform_tail_loss(student_logits, ids, lp, tail, temperature: float):
    """The earlier treatment: the tail's mass spread uniformly over the V - K unstored ids, each id
    re-tempered, T^2 * forward KL on K+1 buckets."""
    import torch

    from summ_assets.core.kd import bucket_divergence, student_buckets

    vocab = student_logits.shape[-1]
    valid = (ids >= 0) & torch.isfinite(lp.float())
    lp_t = torch.where(valid, lp.float(), torch.tensor(float("-inf"))) / temperature
    n_tail = (vocab - valid.sum(-1)).clamp(min=1).float()
    tail_t = (tail.float() - n_tail.log()) / temperature + n_tail.log()
    logp = torch.cat([lp_t, tail_t.unsqueeze(-1)], -1)
    logp = logp - torch.logsumexp(logp, -1, keepdim=True)
    logq = student_buckets(torch.log_softmax(student_logits.float() / temperature, -1), ids, valid)
    return bucket_divergence(logp, logq, "forward_kl") * temperature**2


def compare(name: str, per_sparse, per_dense, g_sparse, g_dense) -> None:
    import torch

    rel = ((per_sparse - per_dense).abs() / per_dense.clamp(min=1e-12)).mean().item()
    rel_total = abs(per_sparse.sum().item() - per_dense.sum().item()) / per_dense.sum().item()
    cos = torch.nn.functional.cosine_similarity(g_sparse, g_dense, dim=-1).clamp(-1, 1)
    angle = torch.rad2deg(torch.acos(cos)).mean().item()
    whole = torch.nn.functional.cosine_similarity(g_sparse.flatten(), g_dense.flatten(), dim=0).clamp(-1, 1)
    print(
        f"{name:<36} relative KL error {rel:6.3f} per position ({rel_total:6.3f} of the total), "
        f"gradient angle {angle:5.1f} deg per position ({math.degrees(math.acos(whole.item())):5.1f} deg whole batch)",
        flush=True,
    )


def main() -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from summ_assets.core import kd
    from summ_assets.core import logits_cache as lc
    from summ_assets.core.examples import build_examples
    from summ_assets.core.lm import completion_logits, pad_batch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--artifacts", type=Path, default=REPO / "artifacts")
    ap.add_argument("--teacher", type=Path)
    ap.add_argument("--student", type=Path)
    ap.add_argument("--temperature", type=float, default=2.0)
    ap.add_argument(
        "--k", type=int, nargs="+", default=[32, 64, 128], help="top-k sizes (the first: all treatments)"
    )
    ap.add_argument("--examples", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.teacher is None:
        args.teacher = newest("teacher_adapter/*/merged", args.artifacts)
        args.student = newest("student_model/*", args.artifacts)
    if args.teacher is None or args.student is None:
        args.teacher, args.student = build_tiny(Path(tempfile.mkdtemp(prefix="bench-temp-")))
    tok = AutoTokenizer.from_pretrained(args.teacher)
    teacher = AutoModelForCausalLM.from_pretrained(args.teacher, dtype=torch.float32).eval()
    student = AutoModelForCausalLM.from_pretrained(args.student, dtype=torch.float32).eval()
    examples = select_examples(build_examples(corpus_rows(tok), tok, 96, 40), args.examples)
    t_lp, s_logits = [], []
    for i in range(0, len(examples), args.batch_size):
        b = pad_batch(examples[i : i + args.batch_size], tok.pad_token_id)
        with torch.no_grad():
            logits, _, _ = completion_logits(teacher, b["input_ids"], b["attention_mask"], b["labels"])
            t_lp.append(torch.log_softmax(logits.float(), -1))
            s_logits.append(completion_logits(student, b["input_ids"], b["attention_mask"], b["labels"])[0])
    full = torch.cat(t_lp)
    student_logits = torch.cat(s_logits).float()
    T, k = args.temperature, args.k[0]
    p_t = torch.softmax(full / T, -1)
    print(
        f"models: teacher {args.teacher} / student {args.student}; vocab {full.shape[1]}; "
        f"{full.shape[0]} summary positions of {len(examples)} examples; T={T}",
        flush=True,
    )
    for kk in args.k:
        tail_mass_1 = 1 - full.exp().topk(kk, -1).values.sum(-1)
        tail_mass_t = 1 - p_t.topk(kk, -1).values.sum(-1)
        print(
            f"teacher tail mass outside the top-{kk}: median {tail_mass_1.median().item():.2e} at T=1, "
            f"{tail_mass_t.median().item():.2e} at T={T}",
            flush=True,
        )

    def per_position_and_grad(fn):
        sl = student_logits.clone().requires_grad_(True)
        per = fn(sl)
        per.sum().backward()
        return per.detach(), sl.grad

    def dense_per(divergence: str):
        def fn(sl):
            logp = torch.log_softmax(full / T, -1)
            logq = torch.log_softmax(sl / T, -1)
            return kd.bucket_divergence(logp, logq, divergence) * T**2

        return fn

    def sparse_per(ids, lp, tail, divergence: str, capture: float):
        def fn(sl):
            return kd.sparse_kd_loss(
                sl,
                ids,
                lp,
                tail,
                temperature=T,
                divergence=divergence,
                capture_temperature=capture,
                reduction="none",
            )

        return fn

    per_d, g_d = per_position_and_grad(dense_per("forward_kl"))
    ids1, lp1, tail1 = lc.sparse_targets(full, "topk", k, 0)
    lp1 = lp1.half().float()  # stored as float16, as the cache does
    per, g = per_position_and_grad(lambda sl: uniform_tail_loss(sl, ids1, lp1, tail1, T))
    compare(f"top-{k} uniform tail (before)", per, per_d, g, g_d)
    per, g = per_position_and_grad(sparse_per(ids1, lp1, tail1, "forward_kl", 1.0))
    compare(f"top-{k} one bucket", per, per_d, g, g_d)
    for kk in args.k:
        idsT, lpT, tailT = lc.sparse_targets(full, "topk", kk, 0, temperature=T)
        lpT = lpT.half().float()
        per, g = per_position_and_grad(sparse_per(idsT, lpT, tailT, "forward_kl", T))
        compare(f"top-{kk} captured at T (shipped)", per, per_d, g, g_d)
    idsT, lpT, tailT = lc.sparse_targets(full, "topk", k, 0, temperature=T)
    lpT = lpT.half().float()
    for divergence in ("reverse_kl", "jsd"):
        per_d2, g_d2 = per_position_and_grad(dense_per(divergence))
        per, g = per_position_and_grad(sparse_per(idsT, lpT, tailT, divergence, T))
        compare(f"top-{k} {divergence}, captured at T", per, per_d2, g, g_d2)


if __name__ == "__main__":
    main()
