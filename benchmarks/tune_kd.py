"""Sweep distillation settings on val only, over several training seeds; then print the test figures
once, for the chosen setting against the CE baseline.

Reuses what `make demo` left in artifacts/ (pruned student base, training split, teacher-logit cache).
Every setting trains once per seed (``TUNE_SEEDS``, default ``0,1,2``) and is scored on the val split
(whole held-out documents; the only set a choice may look at). The setting with the best mean val
ROUGE-Lsum over seeds is chosen; only then are the test sets generated and scored, for the chosen
setting and for CE (``alpha=0.0``), with per-example scores averaged over the seeds, a paired
permutation p-value, a document-clustered CI and the minimum detectable difference. The README's
"Why each setting" records the outcomes.

    .venv/bin/python -m benchmarks.tune_kd alpha=0.0 alpha=0.5 alpha=0.5,divergence=reverse_kl

A setting is comma-separated `field=value` overrides of the profile's StudentConfig (``alpha=0.0`` is
always included: it is the CE baseline). A setting with another `temperature` than the demo cache's
capture temperature trains on a cache re-captured at that temperature (kept under artifacts/_sweep/).
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import time
from dataclasses import replace
from pathlib import Path

from summ_assets.core.offline import use_offline_env


def _load(name: str, root: Path) -> object:
    return pickle.loads((root / "_dagster_io" / name).read_bytes())


def _parse(setting: str, cfg: object) -> dict[str, object]:
    out: dict[str, object] = {}
    for part in filter(None, setting.split(",")):
        k, v = part.split("=", 1)
        cur = getattr(cfg, k)
        out[k] = type(cur)(v) if cur is not None and not isinstance(cur, bool) else v
        if isinstance(cur, bool):
            out[k] = v.lower() in ("1", "true", "yes")
    return out


def _seqkd_examples(root: Path, dataset: str, tok: object, profile: object) -> list[dict]:
    """The seq-KD examples the `teacher_pseudo_summaries` asset would make (all unlabelled sections)."""
    from summ_assets.core import logits_cache as lc
    from summ_assets.stages.seqkd import pseudo_examples, pseudo_rows_for, summarize_and_score

    out = root / "_sweep" / "seqkd"
    if not (out / "stats.json").exists():
        out.mkdir(parents=True, exist_ok=True)
        stats = summarize_and_score(
            pseudo_rows_for(dataset, None), _load("teacher_adapter", root), profile, out, None
        )
        (out / "stats.json").write_text(json.dumps(stats))
    stats = json.loads((out / "stats.json").read_text())
    print(
        f"seq-KD: {stats['n']} teacher summaries ({stats['generate_seconds']:.0f} s + {stats['score_seconds']:.0f} s)"
    )
    spec = lc.CacheSpec.from_metadata(stats["spec"])
    return pseudo_examples({"path": str(out), "n": stats["n"]}, tok, profile, spec)


def cache_at(root: Path, spec: object, temperature: float, train: list[dict], profile: object) -> object:
    """The demo's training examples scored by its teacher at `temperature` (cached under _sweep/)."""
    from dataclasses import replace as dc_replace

    from summ_assets.core import logits_cache as lc
    from summ_assets.core.models import load_causal_lm

    spec_t = dc_replace(spec, capture_temperature=temperature)
    folder = root / "_sweep" / f"cache-T{temperature:g}"
    if not lc.shard_files(folder):
        teacher = load_causal_lm(_load("teacher_adapter", root)["merged"])
        rows = lc.capture(teacher, train, spec_t, 0, profile.cache.batch_size, profile.seed)
        lc.write_shard(rows, folder / "part-sweep.parquet", spec_t, profile.cache.rows_per_group)
        print(f"captured the teacher at T={temperature:g}: {folder}", flush=True)
    return spec_t, lc.load(folder, spec_t, {e["example_key"] for e in train})


def main(settings: list[str]) -> None:
    use_offline_env()
    import numpy as np
    import torch
    from transformers import AutoTokenizer

    from summ_assets.core import logits_cache as lc
    from summ_assets.core import stats
    from summ_assets.core.dataset import read_split
    from summ_assets.core.early_stopping import rouge_per_example
    from summ_assets.core.examples import build_examples
    from summ_assets.core.generation_store import evaluation_rows
    from summ_assets.core.kd import attach_teacher, train_student
    from summ_assets.core.lm import mean_completion_loss
    from summ_assets.core.models import load_causal_lm
    from summ_assets.core.profiles import get_profile

    root = Path("artifacts").resolve()
    profile = get_profile("demo")
    seeds = [int(x) for x in os.environ.get("TUNE_SEEDS", "0,1,2").split(",")]
    settings = ["alpha=0.0", *[s for s in settings if s != "alpha=0.0"]]
    base = dict(_load("student_base", root))
    if os.environ.get("TUNE_PRUNE"):  # e.g. TUNE_PRUNE=0,1,2,3,4,5,10,11,12,13,14,15,16,17
        from summ_assets.core.models import prune_layers

        spec = os.environ["TUNE_PRUNE"]
        folder = root / "_sweep" / ("base-" + spec.replace(",", "_"))
        if not folder.exists():
            prune_layers(Path(_load("teacher_base", root)["path"]), folder, spec)
        base["path"] = str(folder)
    dataset = _load("summary_dataset", root)
    cache_out = _load("teacher_logits", root)
    tok = AutoTokenizer.from_pretrained(base["path"])
    dp = profile.data
    train = build_examples(read_split(dataset, "train"), tok, dp.max_prompt_tokens, dp.max_summary_tokens)
    val_rows = read_split(dataset, "val")
    val = build_examples(val_rows, tok, dp.max_prompt_tokens, dp.max_summary_tokens)
    spec = lc.CacheSpec.from_metadata(cache_out["spec"])
    cache = lc.load(Path(cache_out["path"]), spec, {e["example_key"] for e in train})
    kd_train = attach_teacher(train, cache)
    if os.environ.get("TUNE_SEQKD"):  # teacher summaries of the unlabelled sections join the KD data
        kd_train += _seqkd_examples(root, dataset, tok, profile)
    n_docs = len({r["doc_id"] for r in val_rows})
    print(f"train {len(train)}  val {len(val)} ({n_docs} documents)  seeds {seeds}", flush=True)
    out_root = root / "_sweep"
    val_scores: dict[str, list[list[float]]] = {}
    folders: dict[str, list[Path]] = {}
    for setting in settings:
        over = _parse(setting, profile.student)
        for seed in seeds:
            prof = replace(profile, seed=seed, student=replace(profile.student, **over))
            alpha = prof.student.alpha
            tag = (setting.replace("=", "").replace(",", "_") or "default") + f"-seed{seed}"
            tag += os.environ.get("TUNE_TAG", "")
            t0 = time.time()
            run_spec, run_train = spec, kd_train
            if alpha > 0 and prof.student.temperature != spec.capture_temperature:
                run_spec, cache_t = cache_at(root, spec, prof.student.temperature, train, profile)
                run_train = attach_teacher(train, cache_t)
            metrics = train_student(
                Path(base["path"]),
                run_train if alpha > 0 else train,
                [],
                prof,
                out_root / "_work" / tag,
                out_root / tag,
                alpha=alpha,
                teacher_spec=run_spec,
            )
            model = load_causal_lm(out_root / tag)
            vloss = mean_completion_loss(model, val, tok.pad_token_id)
            rl = rouge_per_example(model, tok, val_rows, profile)
            val_scores.setdefault(setting, []).append(rl)
            folders.setdefault(setting, []).append(out_root / tag)
            result = {
                "setting": setting,
                "seed": seed,
                "val_n": len(val_rows),
                "val_loss": round(vloss, 4),
                "val_rougeLsum": round(sum(rl) / len(rl), 4),
                "steps": metrics["steps"],
                "seconds": round(time.time() - t0, 1),
            }
            (out_root / tag / "sweep.json").write_text(json.dumps({**result, "per_example": rl}))
            print(json.dumps(result), flush=True)
            del model
            torch.set_num_threads(profile.threads or 2)

    docs = [r["doc_id"] for r in val_rows]
    mean_val = {s: np.mean(v, axis=0) for s, v in val_scores.items()}  # per example, over seeds
    print("\n== val (used for the choice): mean over seeds, per-seed means, vs CE")
    for s, per in mean_val.items():
        c = stats.compare(per, mean_val["alpha=0.0"], docs) if s != "alpha=0.0" else None
        seeds_txt = ", ".join(f"{np.mean(x):.4f}" for x in val_scores[s])
        vs = f"  diff {c['mean_diff']:+.4f} p={c['p_value']:.3f}" if c else ""
        print(f"{s:40s} {per.mean():.4f}  (seeds: {seeds_txt}){vs}")
    chosen = max(mean_val, key=lambda s: mean_val[s].mean())
    print(f"chosen on val: {chosen}")
    if chosen == "alpha=0.0":
        print("CE is best on val: no distillation setting to claim on the test sets")
        return
    # the test sets, once, for the chosen setting and CE only
    tests = evaluation_rows(dataset, None)
    print(
        f"\n== test sets (read once, after the choice): {chosen} vs alpha=0.0, mean over {len(seeds)} seeds"
    )
    test_scores: dict[str, dict[str, list[list[float]]]] = {}
    for setting in (chosen, "alpha=0.0"):
        for folder in folders[setting]:
            model = load_causal_lm(folder)
            for name in ("test_seen", "test_similar", "test_new"):
                test_scores.setdefault(name, {}).setdefault(setting, []).append(
                    rouge_per_example(model, tok, tests[name], profile)
                )
            del model
    for name, by in test_scores.items():
        a, b = np.mean(by[chosen], axis=0), np.mean(by["alpha=0.0"], axis=0)
        c = stats.compare(a, b, [r["doc_id"] for r in tests[name]])
        print(
            f"{name:13s} n={c['n']:3d} ({c['n_clusters']} docs{', unstable CI' if c['unstable'] else ''})  "
            f"KD {a.mean():.4f}  CE {b.mean():.4f}  diff {c['mean_diff']:+.4f} "
            f"[{c['low']:+.4f}, {c['high']:+.4f}]  p={c['p_value']:.4f}  MDE {c['mde']:.4f}  "
            f"W/L/T {c['wins']}/{c['losses']}/{c['ties']}"
        )


if __name__ == "__main__":
    main(sys.argv[1:] or ["alpha=0.5"])
