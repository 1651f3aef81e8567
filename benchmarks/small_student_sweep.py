"""Which student is small and still distils back? Depth cut x vocabulary size, decided on val only.

Reuses what `make demo` left in artifacts/ (teacher base, dataset, teacher-logit cache, and the shipped
`student_model` / `student_baseline` as the reference). Each candidate ``<kept layers>@<vocab>`` (vocab
``full`` or a row count) is built the way the graph builds it (`prune_layers`, then the training text's
merge closure padded by rank, `trim_folder`), distilled with the demo's settings (alpha, steps, seed),
and scored on val (whole held-out documents, the only set a choice may look at):

- parameters and their share of the teacher's;
- val ROUGE-Lsum (greedy, the shipped decoding) and val loss in bits per byte of the summary text
  (per byte, never per token: the tokenizers differ);
- forced-length decode tokens/s at batch 8, measured beside the teacher in the same run.

The rule, stated before the run: among candidates within ``--max-share`` of the teacher's parameters,
pick the smallest whose distilled val ROUGE-Lsum passes the promotion gate's non-inferiority test
against the reference student (``eval.regress_margin``, one-sided ``1 - eval.gate_alpha``). The chosen
one then trains a CE baseline (same base, same steps; the baseline gate, ``eval.baseline_gate``) and a
``--settings`` re-sweep (e.g. ``alpha=0.25 alpha=1.0``); the best mean val ROUGE-Lsum wins. No test
set is read here: the graph's evaluation reports the chosen student on the test sets.

    .venv/bin/python -m benchmarks.small_student_sweep \\
        0,1,2,3,4,5,10,11,12,13,14,15,16,17@16384 0,1,2,3,4,5,10,11,12,13,14,15,16,17@8192 \\
        --settings alpha=0.25 alpha=0.75 alpha=1.0
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import time
from dataclasses import replace
from pathlib import Path

from summ_assets.core.offline import use_offline_env


def _load(name: str, root: Path) -> object:
    return pickle.loads((root / "_dagster_io" / name).read_bytes())


def _short(layers: str) -> str:
    return f"{len(layers.split(','))}L"


def main(argv: list[str] | None = None) -> int:
    use_offline_env()
    import torch
    from transformers import AutoTokenizer

    from summ_assets.core import logits_cache as lc
    from summ_assets.core.dataset import read_split
    from summ_assets.core.early_stopping import rouge_per_example
    from summ_assets.core.examples import build_examples
    from summ_assets.core.gates import ValScores, baseline_gate, regress_gate
    from summ_assets.core.generation_store import forced_decode_speed
    from summ_assets.core.kd import attach_teacher, train_student
    from summ_assets.core.lm import completion_loss_and_bpb
    from summ_assets.core.models import count_parameters, load_causal_lm, prune_layers
    from summ_assets.core.profiles import get_profile
    from summ_assets.core.vocab import in_student_ids, kept_vocab, map_cache, trim_folder

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("candidates", nargs="+", help="<kept layers>@<vocab rows|full>")
    ap.add_argument("--settings", nargs="*", default=[], help="field=value[,..] re-sweep of the chosen one")
    ap.add_argument("--max-share", type=float, default=0.40)
    ap.add_argument("--artifacts", default="artifacts")
    args = ap.parse_args(argv)

    root = Path(args.artifacts).resolve()
    out_root = root / "_sweep" / "small"
    profile = get_profile("demo")
    dp, ev = profile.data, profile.eval
    speed = replace(profile, eval=replace(ev, speed_batch=8, speed_tokens=32))
    teacher_base = Path(_load("teacher_base", root)["path"])
    dataset = _load("summary_dataset", root)
    cache_out = _load("teacher_logits", root)
    full_tok = AutoTokenizer.from_pretrained(teacher_base)
    train_full = build_examples(
        read_split(dataset, "train"), full_tok, dp.max_prompt_tokens, dp.max_summary_tokens
    )
    val_rows = read_split(dataset, "val")
    docs = {r["section_id"]: r["doc_id"] for r in val_rows}
    spec = lc.CacheSpec.from_metadata(cache_out["spec"])
    cache = lc.load(Path(cache_out["path"]), spec, {e["example_key"] for e in train_full})
    texts = [r["text"] for r in val_rows][:8]

    def val_scores(model: object, tok: object) -> tuple[ValScores, float]:
        val = build_examples(val_rows, tok, dp.max_prompt_tokens, dp.max_summary_tokens)
        rl = rouge_per_example(model, tok, val_rows, profile)
        scores = ValScores({r["section_id"]: s for r, s in zip(val_rows, rl, strict=True)}, docs)
        return scores, completion_loss_and_bpb(model, val, tok)[1]

    teacher = load_causal_lm(_load("teacher_adapter", root)["merged"])
    t_params = count_parameters(teacher)
    t_speed = [forced_decode_speed(teacher, full_tok, texts, speed)["tokens_per_s"]]

    def report(name: str, path: Path, alpha: float, seconds: float) -> dict:
        saved = out_root / "rows" / f"{path.name}.json"  # a rerun reuses what was scored
        if saved.exists():
            row = json.loads(saved.read_text())
            print(json.dumps({k: v for k, v in row.items() if k != "scores"}), flush=True)
            return {**row, "scores": ValScores(row["scores"], docs)}
        model = load_causal_lm(path)
        tok = AutoTokenizer.from_pretrained(path)
        scores, bpb = val_scores(model, tok)
        tps = forced_decode_speed(model, tok, texts, speed)["tokens_per_s"]
        t_speed.append(forced_decode_speed(teacher, full_tok, texts, speed)["tokens_per_s"])
        params = count_parameters(model)
        row = {
            "name": name,
            "alpha": alpha,
            "parameters": params,
            "share_of_teacher": round(params / t_params, 3),
            "val_rougeLsum": round(sum(scores.scores.values()) / len(scores.scores), 4),
            "val_bits_per_byte": round(bpb, 4),
            "decode_tok_s_b8": round(tps, 1),
            "teacher_tok_s_b8": round(t_speed[-1], 1),
            "decode_ratio": round(tps / t_speed[-1], 2),
            "seconds": round(seconds, 1),
        }
        print(json.dumps(row), flush=True)
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps({**row, "scores": scores.scores}))
        del model
        torch.set_num_threads(profile.threads or 2)
        return {**row, "scores": scores}

    def train(layers: str, vocab: int | None, name: str, over: dict) -> dict:
        t0 = time.time()
        prof = replace(profile, student=replace(profile.student, **over))
        pruned = out_root / f"base-{_short(layers)}-{hashlib.sha256(layers.encode()).hexdigest()[:8]}"
        if not (pruned / "config.json").exists():
            prune_layers(teacher_base, pruned, layers)
        base, train_ex, run_cache = pruned, train_full, cache
        if vocab is not None:  # cut from the pruned folder's tokenizer, as `student_trimmed_base` does
            tok = AutoTokenizer.from_pretrained(pruned)
            kept = kept_vocab(tok, [e["input_ids"] for e in train_full], vocab)
            base = out_root / f"trim-{pruned.name}-{kept.version()[:12]}"
            if not (base / "config.json").exists():
                trim_folder(pruned, kept, base)
            train_ex, left_out = in_student_ids(train_full, kept)
            assert not left_out, "the closure keeps every training token"
            run_cache = map_cache(cache, kept)
            name = f"{name}-{kept.version()[:8]}"  # a new kept-set rule trains anew
        alpha = prof.student.alpha
        examples = attach_teacher(train_ex, run_cache) if alpha > 0 else train_ex
        folder = out_root / name
        if not (folder / "training_metrics.json").exists():
            train_student(
                base, examples, [], prof, out_root / "_work" / name, folder, alpha=alpha, teacher_spec=spec
            )
        return report(name, folder, alpha, time.time() - t0)

    ref = report(
        "reference (shipped student)", Path(_load("student_model", root)["path"]), profile.student.alpha, 0
    )
    ref_base = report("reference CE baseline", Path(_load("student_baseline", root)["path"]), 0.0, 0)
    rows = []
    for cand in args.candidates:
        layers, vocab_s = cand.split("@")
        vocab = None if vocab_s == "full" else int(vocab_s)
        rows.append((layers, vocab, train(layers, vocab, f"{_short(layers)}-{vocab_s}-kd", {})))

    def gate_vs(new: dict, old: dict) -> object:
        return regress_gate(
            new["scores"],
            old["scores"],
            comparable=(True, ""),
            margin=ev.regress_margin,
            alpha=ev.gate_alpha,
            n_samples=ev.bootstrap_samples,
            seed=profile.seed,
        )

    print(f"\n== val (the only set this sweep reads), teacher {t_params / 1e6:.1f}M params")
    ok = []
    for layers, vocab, row in rows:
        g = gate_vs(row, ref)
        fits = row["share_of_teacher"] <= args.max_share
        print(
            f"{row['name']:14s} {row['parameters'] / 1e6:6.1f}M ({row['share_of_teacher']:.0%})  "
            f"val RL {row['val_rougeLsum']:.4f}  bpb {row['val_bits_per_byte']:.3f}  "
            f"decode x{row['decode_ratio']:.2f}  vs reference: {g.reasons[0]}"
        )
        if fits and g.passed:
            ok.append((row["parameters"], layers, vocab, row))
    if not ok:
        print("no candidate within the size target passes non-inferiority against the reference")
        return 1
    _, layers, vocab, chosen = min(ok, key=lambda x: x[0])
    print(f"chosen (smallest that passes): {chosen['name']}")
    vs = f"{len(layers.split(','))}L-{vocab or 'full'}"
    ce = train(layers, vocab, f"{vs}-ce", {"alpha": 0.0})
    print(
        "baseline gate:",
        baseline_gate(
            chosen["scores"],
            ce["scores"],
            rule=ev.baseline_gate,
            alpha=ev.gate_alpha,
            n_samples=ev.bootstrap_samples,
            seed=profile.seed,
        ).reasons[0],
    )
    tried = {f"alpha={profile.student.alpha}": chosen}
    for s in args.settings:
        over = {k: type(getattr(profile.student, k))(v) for k, v in (p.split("=", 1) for p in s.split(","))}
        tried[s] = train(layers, vocab, f"{vs}-{s.replace('=', '').replace(',', '_')}", over)
    print("\n== re-sweep on val for the chosen shape")
    for s, row in tried.items():
        print(f"{s:24s} val RL {row['val_rougeLsum']:.4f}  bpb {row['val_bits_per_byte']:.3f}")
    best = max(tried, key=lambda s: tried[s]["val_rougeLsum"])
    print(
        f"best on val: {best}; CE baseline val RL {ce['val_rougeLsum']:.4f}; reference "
        f"{ref['val_rougeLsum']:.4f} (its CE baseline {ref_base['val_rougeLsum']:.4f})"
    )
    print(f"teacher decode tok/s at batch 8 over the run: {', '.join(f'{x:.1f}' for x in t_speed)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
