"""Sweep distillation settings on the demo's artifacts and print val ROUGE-Lsum (Kiwi) per setting.

Reuses what `make demo` left in artifacts/ (pruned student base, capped training split and its
teacher-logit cache) and scores every setting on the *uncapped* val split of the same corpus, so a
difference between settings is measured on ~4x more examples than the demo report's val table.
Each line it prints is one training run; the README's "Distillation notes" records the outcomes.

    .venv/bin/python -m benchmarks.tune_kd alpha=0.0 alpha=0.5 alpha=0.5,divergence=reverse_kl

A setting is comma-separated `field=value` overrides of the profile's StudentConfig. A setting with
another `temperature` than the demo cache's capture temperature trains on a cache re-captured at that
temperature (teacher forward once per temperature, kept under artifacts/_sweep/), so KD at T is exact.
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


def uncapped_split(manifest: str, data_root: Path, profile: object, split: str) -> list[dict]:
    import pyarrow.parquet as pq

    from summ_assets.core.dataset import split_rows
    from summ_assets.core.labels import load_labels, match_labels

    sections = pq.read_table(manifest).to_pylist()
    rep = load_labels(data_root / "labels", data_root)
    matched = match_labels(rep, sections, {s["doc_id"] for s in sections})
    return split_rows(sections, matched, profile.data)[split]


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
    import torch
    from transformers import AutoTokenizer

    from summ_assets.core import logits_cache as lc
    from summ_assets.core.dataset import read_split
    from summ_assets.core.examples import build_examples
    from summ_assets.core.generation import summarize_texts
    from summ_assets.core.kd import attach_teacher, train_student
    from summ_assets.core.metrics import rouge_scores
    from summ_assets.core.models import load_causal_lm
    from summ_assets.core.profiles import get_profile

    root = Path("artifacts").resolve()
    profile = get_profile("demo")
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
    manifest = _load("corpus_manifest", root)
    tok = AutoTokenizer.from_pretrained(base["path"])
    dp = profile.data
    train = build_examples(read_split(dataset, "train"), tok, dp.max_prompt_tokens, dp.max_summary_tokens)
    val_rows = uncapped_split(manifest, Path("data").resolve(), profile, "val")
    val = build_examples(val_rows, tok, dp.max_prompt_tokens, dp.max_summary_tokens)
    spec = lc.CacheSpec.from_metadata(cache_out["spec"])
    cache = lc.load(Path(cache_out["path"]), spec, {e["example_key"] for e in train})
    kd_train = attach_teacher(train, cache)
    if os.environ.get("TUNE_SEQKD"):  # teacher summaries of the unlabelled sections join the KD data
        kd_train += _seqkd_examples(root, dataset, tok, profile)
    print(f"train {len(train)}  val (uncapped) {len(val)}", flush=True)
    out_root = root / "_sweep"
    for setting in settings:
        over = _parse(setting, profile.student)
        prof = replace(profile, student=replace(profile.student, **over))
        alpha = prof.student.alpha
        tag = (setting.replace("=", "").replace(",", "_") or "default") + os.environ.get("TUNE_TAG", "")
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
        from summ_assets.core.lm import mean_completion_loss

        vloss = mean_completion_loss(model, val, tok.pad_token_id)
        preds, st = summarize_texts(
            model,
            tok,
            [r["text"] for r in val_rows],
            max_prompt_tokens=dp.max_prompt_tokens,
            max_new_tokens=profile.eval.max_new_tokens,
            batch_size=profile.eval.batch_size,
        )
        scores = rouge_scores(preds, [r["summary"] for r in val_rows], "kiwi")
        rl = [s["rougeLsum_f"] for s in scores]
        result = {
            "setting": setting,
            "val_n": len(val_rows),
            "val_loss": round(vloss, 4),
            "rougeLsum": round(sum(rl) / len(rl), 4),
            "rouge1": round(sum(s["rouge1_f"] for s in scores) / len(scores), 4),
            "steps": metrics["steps"],
            "seconds": round(time.time() - t0, 1),
        }
        (out_root / tag / "sweep.json").write_text(json.dumps({**result, "per_example": rl, "preds": preds}))
        print(json.dumps(result), flush=True)
        del model
        torch.set_num_threads(profile.threads or 2)


if __name__ == "__main__":
    main(sys.argv[1:] or ["alpha=0.0", "alpha=0.5"])
