"""Teacher half: LoRA fine-tuning, then the teacher log-prob cache."""

from dataclasses import asdict
from pathlib import Path

import dagster as dg

from summ_assets.core.artifacts import atomic_dir, sha256_file, stable_json_hash
from summ_assets.defs.common import GPU_POOL, code_version, curve_md, progress_logger
from summ_assets.defs.ingest import read_split
from summ_assets.defs.modelcard import write_model_card
from summ_assets.defs.resources import ComputeResource, SummSettings

GROUP = "teacher"
TEACHER_ADAPTER_CODE = "teacher-adapter-v1"
TEACHER_LOGITS_CODE = "teacher-logits-v1"


def _base_version(base: dict) -> str:
    p = Path(base["path"]) / ".summ_version"
    return p.read_text().strip() if p.exists() else base["path"]


@dg.asset(
    group_name=GROUP,
    pool=GPU_POOL,
    code_version=code_version(TEACHER_ADAPTER_CODE, "teacher", "data", "device", "dtype"),
    kinds={"pytorch", "huggingface"},
    description="LoRA teacher (peft + trl SFTTrainer, loss on summary tokens); adapter + merged model.",
)
def teacher_adapter(
    context: dg.AssetExecutionContext,
    settings: SummSettings,
    compute: ComputeResource,
    teacher_base: dict,
    summary_dataset: str,
) -> dg.Output:
    from transformers import AutoTokenizer

    from summ_assets.core.examples import build_examples
    from summ_assets.core.lora import train_lora_teacher

    profile = compute.configure(settings.get_profile())
    key = stable_json_hash(
        {
            "base": _base_version(teacher_base),
            "data": summary_dataset,
            "cfg": asdict(profile.teacher),
            "d": asdict(profile.data),
            "code": TEACHER_ADAPTER_CODE,
        }
    )[:16]
    root = settings.asset_dir("teacher_adapter")
    target = root / key
    train_rows, val_rows = read_split(summary_dataset, "train"), read_split(summary_dataset, "val")
    if not train_rows:
        raise dg.Failure("the train split is empty: add labelled documents under data/raw and data/labels")
    if target.exists():
        context.log.info(f"teacher for these inputs already trained at {target}; reusing")
        import json

        metrics = json.loads((target / "metrics.json").read_text())
    else:
        tok = AutoTokenizer.from_pretrained(teacher_base["path"])
        val_examples = build_examples(
            val_rows, tok, profile.data.max_prompt_tokens, profile.data.max_summary_tokens
        )
        with atomic_dir(target) as tmp:
            metrics = train_lora_teacher(
                Path(teacher_base["path"]),
                train_rows,
                val_examples,
                val_rows,
                profile,
                work_dir=root / "_work" / key,
                out_dir=tmp,
                progress=progress_logger(context),
            )
            from summ_assets.core.artifacts import write_json

            write_json(tmp / "metrics.json", metrics)
            lineage = {
                "teacher_base": teacher_base["path"],
                "summary_dataset": summary_dataset,
                "train_examples": len(train_rows),
                "val_examples": len(val_rows),
            }
            for sub in ("adapter", "merged"):
                write_model_card(
                    tmp / sub, f"summ-assets teacher ({sub})", lineage, asdict(profile.teacher), metrics
                )
    version = sha256_file(target / "adapter" / "adapter_model.safetensors")[:24]
    return dg.Output(
        {
            "path": str(target),
            "merged": str(target / "merged"),
            "adapter": str(target / "adapter"),
            "version": version,
        },
        data_version=dg.DataVersion(version),
        metadata={
            "artifact": dg.MetadataValue.path(str(target)),
            "base_val_loss": float(metrics["base_val_loss"]),
            "val_loss": float(metrics["val_loss"]),
            "train_seconds": float(metrics["train_seconds"]),
            "steps": int(metrics["steps"]),
            "trainable_parameters": int(metrics["trainable_parameters"]),
            "train_loss_curve": dg.MetadataValue.md(curve_md(metrics["train_loss_curve"], "train loss")),
            "eval_loss_curve": dg.MetadataValue.md(curve_md(metrics["eval_loss_curve"], "eval loss")),
        },
    )


def cache_spec(profile, teacher_adapter: dict, tokenizer) -> object:  # noqa: ANN001
    from summ_assets.core.artifacts import sha256_bytes
    from summ_assets.core.logits_cache import CacheSpec
    from summ_assets.core.models import tokenizer_fingerprint

    return CacheSpec(
        mode=profile.cache.mode,
        k=profile.cache.k,
        n_samples=profile.cache.n_samples,
        teacher_fingerprint=teacher_adapter["version"],
        tokenizer_hash=tokenizer_fingerprint(tokenizer),
        chat_template_hash=sha256_bytes((tokenizer.chat_template or "").encode())[:16],
    )


@dg.asset(
    group_name=GROUP,
    pool=GPU_POOL,
    code_version=code_version(TEACHER_LOGITS_CODE, "cache", "data"),
    kinds={"pytorch", "parquet"},
    description="Sparse teacher log-probs (top-k + tail, or sampled) for every training example, in "
    "Parquet; incremental: only examples with new content keys are scored.",
)
def teacher_logits(
    context: dg.AssetExecutionContext,
    settings: SummSettings,
    compute: ComputeResource,
    teacher_adapter: dict,
    summary_dataset: str,
) -> dg.Output:
    from transformers import AutoTokenizer

    from summ_assets.core import logits_cache as lc
    from summ_assets.core.examples import build_examples
    from summ_assets.core.lm import set_threads
    from summ_assets.core.models import load_causal_lm, resolve_device

    profile = compute.configure(settings.get_profile())
    tok = AutoTokenizer.from_pretrained(teacher_adapter["merged"])
    spec = cache_spec(profile, teacher_adapter, tok)
    examples = build_examples(
        read_split(summary_dataset, "train"),
        tok,
        profile.data.max_prompt_tokens,
        profile.data.max_summary_tokens,
    )
    keys = sorted({e["example_key"] for e in examples})
    version = stable_json_hash({"spec": spec.metadata(), "keys": keys})[:24]
    root = settings.asset_dir("teacher_logits")
    target = root / version

    # previous compatible version: reuse its shards, score only the new keys
    reused: dict[str, Path] = {}
    prev = context.instance.get_latest_materialization_event(context.asset_key)
    if prev is not None and prev.asset_materialization is not None:
        prev_path = prev.asset_materialization.metadata.get("artifact")
        prev_dir = Path(prev_path.value) if prev_path is not None else None
        if prev_dir is not None and prev_dir.is_dir() and lc.shard_files(prev_dir):
            try:
                lc.check_compatible(lc.read_metadata(lc.shard_files(prev_dir)[0]), spec, str(prev_dir))
                reused = lc.cached_keys(prev_dir)
            except lc.CacheMismatchError as exc:
                context.log.info(f"previous cache not reusable: {exc}")
    todo = [e for e in examples if e["example_key"] not in reused]
    # de-duplicate identical examples
    todo = list({e["example_key"]: e for e in todo}.values())
    if not target.exists():
        with atomic_dir(target) as tmp:
            for shard in sorted({p for k, p in reused.items() if k in set(keys)}):
                lc.link_or_copy(shard, tmp / shard.name)
            if todo:
                set_threads(profile.threads)
                model = load_causal_lm(
                    teacher_adapter["merged"], profile.dtype, resolve_device(profile.device)
                )
                rows = lc.capture(
                    model,
                    todo,
                    spec,
                    tok.pad_token_id,
                    profile.cache.batch_size,
                    profile.seed,
                    progress=progress_logger(context),
                )
                shard_name = f"part-{stable_json_hash(sorted(r['example_key'] for r in rows))[:16]}.parquet"
                lc.write_shard(rows, tmp / shard_name, spec, profile.cache.rows_per_group)
    stats = lc.stats(target)
    context.log.info(f"cache {target}: {stats}; scored {len(todo)} new, reused {len(examples) - len(todo)}")
    return dg.Output(
        {"path": str(target), "spec": spec.metadata(), "version": version},
        data_version=dg.DataVersion(version),
        metadata={
            "artifact": dg.MetadataValue.path(str(target)),
            "dagster/uri": str(target),
            "mode": spec.mode,
            "k": spec.k,
            "examples": len(keys),
            "scored_examples": len(todo),
            "reused_examples": len(examples) - len(todo),
            "positions": stats["positions"],
            "bytes": stats["bytes"],
            "bytes_per_position": float(stats["bytes_per_position"]),
            "shards": stats["shards"],
        },
    )
