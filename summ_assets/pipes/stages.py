"""Stage bodies shared by the in-process assets and the Pipes remote (no dagster import here).

A stage takes the configured profile, the asset's artifact folder and its upstream values (small
JSON path records), writes a content-addressed artifact and returns a `StageResult`: the asset's
output value, its metadata in Dagster Pipes' wire format (``{"key": {"raw_value": v, "type": t}}``)
and its data version. In-process, `summ_assets.defs.pipes.to_output` turns that into a `dg.Output`;
remotely, `summ_assets.remote` reports the very same dict through `report_asset_materialization`, so
both paths record identical metadata and data versions.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from summ_assets.core.artifacts import atomic_dir, sha256_file, stable_json_hash

TEACHER_ADAPTER_CODE = "teacher-adapter-v2"
TEACHER_LOGITS_CODE = "teacher-logits-v1"
# How many shards the teacher-logit cache is scored in (1 = one part file, the historic layout). Under
# `torchrun --nproc_per_node=N` the count is at least N (one shard or more per rank). Not a profile
# field: the cache content and its data version do not depend on it.
SHARDS_ENV = "SUMM_LOGIT_SHARDS"

Progress = Callable[[str], None]


class StageError(RuntimeError):
    """A stage cannot run on these inputs; the message says what to change."""


@dataclass
class StageResult:
    value: dict[str, Any]  # the asset's output (JSON-serializable path record)
    metadata: dict[str, dict[str, Any]]  # Pipes wire format: {"key": {"raw_value": v, "type": t}}
    data_version: str


@dataclass
class Dist:
    """Where this process sits in a `torchrun`/`accelerate launch` group (1 process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    barrier: Callable[[], None] = field(default=lambda: None)

    @classmethod
    def from_env(cls, barrier: Callable[[], None] | None = None) -> Dist:
        return cls(
            rank=int(os.environ.get("RANK", "0")),
            world_size=int(os.environ.get("WORLD_SIZE", "1")),
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
            barrier=barrier or (lambda: None),
        )


def meta(value: Any, type_: str = "__infer__") -> dict[str, Any]:
    return {"raw_value": value, "type": type_}


def shards_from_env() -> int:
    raw = os.environ.get(SHARDS_ENV, "1")
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise StageError(f"${SHARDS_ENV}={raw!r}: set a positive number of logit-cache shards (default 1)")
    return n


# --- profile on the wire -----------------------------------------------------------------------------


def profile_to_dict(profile: Any) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(profile)))


def profile_from_dict(data: dict[str, Any]) -> Any:
    """Inverse of `profile_to_dict` (nested config dataclasses, tuples restored): the remote side runs
    with exactly the profile the orchestrator configured (device, dtype, threads, 4-bit included)."""
    from summ_assets.core.profiles import Profile

    return _build(Profile, data)


def _build(cls: type, data: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(names)
    if unknown:
        raise StageError(
            f"profile fields {sorted(unknown)} are unknown to {cls.__name__} on this side: the remote runs "
            "another summ-assets version than the orchestrator — deploy the same image to both"
        )
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = _build(hint, value)
        elif isinstance(value, list) and typing.get_origin(hint) is tuple:
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


# --- shared helpers ----------------------------------------------------------------------------------


def base_version(base: dict) -> str:
    p = Path(base["path"]) / ".summ_version"
    return p.read_text().strip() if p.exists() else base["path"]


def read_split(dataset_dir: str, split: str) -> list[dict]:
    """Rows of one split of `summary_dataset` (same as `defs.ingest.read_split`, without dagster)."""
    import pyarrow.parquet as pq

    return pq.read_table(Path(dataset_dir) / f"{split}.parquet").to_pylist()


def cache_spec(profile: Any, teacher_adapter: dict, tokenizer: Any) -> Any:
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


def curve_md(curve: list, name: str) -> str:
    rows = "\n".join(f"| {s} | {v:.4f} |" for s, v in curve)
    return f"| step | {name} |\n|---|---|\n{rows}\n"


def _say(fn: Progress | None, msg: str) -> None:
    if fn is not None:
        fn(msg)


# --- teacher_adapter ---------------------------------------------------------------------------------


def teacher_adapter_stage(
    profile: Any,
    root: Path,
    teacher_base: dict,
    summary_dataset: str,
    progress: Progress | None = None,
    log: Progress | None = None,
) -> StageResult:
    """LoRA teacher for (base, dataset, teacher config): `root/<key>/{adapter,merged}`; reused when the
    folder exists. One process (a multi-GPU box shards the 9B model with device_map="auto")."""
    from transformers import AutoTokenizer

    from summ_assets.core.artifacts import write_json
    from summ_assets.core.examples import build_examples
    from summ_assets.core.lora import train_lora_teacher
    from summ_assets.defs.modelcard import write_model_card

    root = Path(root)
    key = stable_json_hash(
        {
            "base": base_version(teacher_base),
            "data": summary_dataset,
            "cfg": asdict(profile.teacher),
            "d": asdict(profile.data),
            "code": TEACHER_ADAPTER_CODE,
        }
    )[:16]
    target = root / key
    train_rows, val_rows = read_split(summary_dataset, "train"), read_split(summary_dataset, "val")
    if not train_rows:
        raise StageError("the train split is empty: add labelled documents under data/raw and data/labels")
    if target.exists():
        _say(log, f"teacher for these inputs already trained at {target}; reusing")
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
                progress=progress,
            )
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
    return StageResult(
        value={
            "path": str(target),
            "merged": str(target / "merged"),
            "adapter": str(target / "adapter"),
            "version": version,
        },
        metadata={
            "artifact": meta(str(target), "path"),
            "base_val_loss": meta(float(metrics["base_val_loss"]), "float"),
            "val_loss": meta(float(metrics["val_loss"]), "float"),
            "train_seconds": meta(float(metrics["train_seconds"]), "float"),
            "steps": meta(int(metrics["steps"]), "int"),
            "trainable_parameters": meta(int(metrics["trainable_parameters"]), "int"),
            "train_loss_curve": meta(curve_md(metrics["train_loss_curve"], "train loss"), "md"),
            "eval_loss_curve": meta(curve_md(metrics["eval_loss_curve"], "eval loss"), "md"),
        },
        data_version=version,
    )


# --- teacher_logits ----------------------------------------------------------------------------------


def _load_teacher(path: str, profile: Any, dist: Dist) -> Any:
    from summ_assets.core.models import load_causal_lm, resolve_device

    device = resolve_device(profile.device)
    if device == "cuda" and dist.world_size > 1:
        # data parallel: each rank holds a full copy on its own GPU (not device_map="auto" over all)
        from transformers import AutoModelForCausalLM

        from summ_assets.core.models import torch_dtype

        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=torch_dtype(profile.dtype), device_map={"": dist.local_rank}
        )
        if "gemma" in getattr(model.config, "model_type", ""):
            model.config._attn_implementation = "eager"
        return model
    return load_causal_lm(path, profile.dtype, device, profile.max_memory)


def staging_dir(root: Path, version: str, todo_keys: list[str], num_shards: int) -> Path:
    """Where the shards of one piece of work collect: same version, same new keys, same split -> same
    folder, so a re-run after a crash keeps the shards that were already written."""
    return Path(root) / "_shards" / f"{version}-{stable_json_hash(sorted(todo_keys))[:8]}-{num_shards}"


def teacher_logits_stage(
    profile: Any,
    root: Path,
    teacher_adapter: dict,
    summary_dataset: str,
    prev_dir: str | None = None,
    num_shards: int = 1,
    dist: Dist | None = None,
    progress: Progress | None = None,
    log: Progress | None = None,
) -> StageResult | None:
    """Sparse teacher log-probs for every training example, in `root/<version>/part-*.parquet`.

    Incremental: shard files of `prev_dir` (the last materialization) whose spec matches are
    hard-linked and only examples with new keys are scored. With `num_shards` > 1 or several ranks
    (`dist`), the new examples are split by `logits_cache.shard_index`; each rank scores its shards
    into a staging folder (shards already there from an interrupted run are kept), then rank 0
    merges them atomically. Returns the result on rank 0, None on the other ranks.
    """
    from transformers import AutoTokenizer

    from summ_assets.core import logits_cache as lc
    from summ_assets.core.examples import build_examples
    from summ_assets.core.lm import set_threads

    dist = dist or Dist()
    root = Path(root)
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
    target = root / version

    # previous compatible version: reuse its shards, score only the new keys
    reused: dict[str, Path] = {}
    prev = Path(prev_dir) if prev_dir else None
    if prev is not None and prev.is_dir() and lc.shard_files(prev):
        try:
            lc.check_compatible(lc.read_metadata(lc.shard_files(prev)[0]), spec, str(prev))
            reused = lc.cached_keys(prev)
        except lc.CacheMismatchError as exc:
            _say(log, f"previous cache not reusable: {exc}")
    todo = [e for e in examples if e["example_key"] not in reused]
    todo = list({e["example_key"]: e for e in todo}.values())  # de-duplicate identical examples
    keep = sorted({p for k, p in reused.items() if k in set(keys)})
    n = max(num_shards, dist.world_size)

    def score(batch: list[dict], model_box: list) -> list[dict]:
        if not model_box:
            set_threads(profile.threads)
            model_box.append(_load_teacher(teacher_adapter["merged"], profile, dist))
        return lc.capture(
            model_box[0],
            batch,
            spec,
            tok.pad_token_id,
            profile.cache.batch_size,
            profile.seed,
            progress=progress,
        )

    if not target.exists():
        model_box: list = []
        if n == 1:
            with atomic_dir(target) as tmp:
                for shard in keep:
                    lc.link_or_copy(shard, tmp / shard.name)
                if todo:
                    rows = score(todo, model_box)
                    shard_name = (
                        f"part-{stable_json_hash(sorted(r['example_key'] for r in rows))[:16]}.parquet"
                    )
                    lc.write_shard(rows, tmp / shard_name, spec, profile.cache.rows_per_group)
        else:
            todo_keys = sorted(e["example_key"] for e in todo)
            staging = staging_dir(root, version, todo_keys, n)
            parts = lc.split_into_shards(todo, n)
            for i in range(dist.rank, n, dist.world_size):
                path = lc.shard_part_path(staging, i, n)
                want = {e["example_key"] for e in parts[i]}
                if path.exists() and set(lc.shard_part_keys(path)) == want:
                    _say(log, f"shard {i}/{n} already scored ({len(want)} examples); keeping it")
                    continue
                rows = score(parts[i], model_box) if parts[i] else []
                lc.write_shard_part(rows, staging, i, n, spec, profile.cache.rows_per_group)
                _say(log, f"rank {dist.rank}: shard {i}/{n} scored ({len(rows)} examples)")
            dist.barrier()
            if dist.rank != 0:
                return None
            merged = lc.merge_shards(staging, target, spec, n, set(todo_keys), reuse=keep)
            _say(log, f"merged {n} shards into {target}: {merged}")
            import shutil

            shutil.rmtree(staging, ignore_errors=True)
    elif dist.rank != 0:
        return None
    stats = lc.stats(target)
    _say(log, f"cache {target}: {stats}; scored {len(todo)} new, reused {len(examples) - len(todo)}")
    return StageResult(
        value={"path": str(target), "spec": spec.metadata(), "version": version},
        metadata={
            "artifact": meta(str(target), "path"),
            "dagster/uri": meta(str(target), "text"),
            "mode": meta(spec.mode, "text"),
            "k": meta(spec.k, "int"),
            "examples": meta(len(keys), "int"),
            "scored_examples": meta(len(todo), "int"),
            "reused_examples": meta(len(examples) - len(todo), "int"),
            "positions": meta(stats["positions"], "int"),
            "bytes": meta(stats["bytes"], "int"),
            "bytes_per_position": meta(float(stats["bytes_per_position"]), "float"),
            "shards": meta(stats["shards"], "int"),
        },
        data_version=version,
    )


STAGES = ("teacher_adapter", "teacher_logits")


def run_stage(
    stage: str,
    extras: dict[str, Any],
    dist: Dist | None = None,
    progress: Progress | None = None,
    log: Progress | None = None,
) -> StageResult | None:
    """Run `stage` from the Pipes extras written by `summ_assets.defs.pipes.stage_extras`."""
    profile = profile_from_dict(extras["profile"])
    root = Path(extras["asset_root"])
    inputs = extras["inputs"]
    options = extras.get("options", {})
    dist = dist or Dist()
    if stage == "teacher_adapter":
        if dist.world_size > 1:
            raise StageError(
                f"teacher_adapter runs as one process (WORLD_SIZE={dist.world_size} here): launch it with "
                "plain python; a multi-GPU box spreads the teacher over its GPUs with device_map='auto'"
            )
        return teacher_adapter_stage(
            profile, root, inputs["teacher_base"], inputs["summary_dataset"], progress=progress, log=log
        )
    if stage == "teacher_logits":
        return teacher_logits_stage(
            profile,
            root,
            inputs["teacher_adapter"],
            inputs["summary_dataset"],
            prev_dir=options.get("prev_dir"),
            num_shards=int(options.get("num_shards", 1)),
            dist=dist,
            progress=progress,
            log=log,
        )
    raise StageError(f"unknown stage {stage!r}; choose one of {STAGES}")
