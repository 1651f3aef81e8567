"""The teacher's heavy stages, run the same way in-process and on a remote machine through Dagster Pipes.

A stage takes the configured profile, the asset's artifact folder and its upstream values (small
JSON path records), writes a content-addressed artifact and returns a `StageResult`: the asset's
output value, its metadata in Dagster Pipes' wire format (``{"key": {"raw_value": v, "type": t}}``)
and its data version. In-process, `summ_assets.defs.stage_io.to_output` turns that into a
`dg.Output`; remotely, `summ_assets.remote` reports the very same dict through
`report_asset_materialization`, so both paths record identical metadata and data versions.
No dagster import here: a GPU pod needs only `dagster-pipes`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from summ_assets.core import logits_cache as lc
from summ_assets.core.artifacts import (
    cached_artifact,
    remove_dir,
    set_aside,
    sha256_bytes,
    sha256_file,
    stable_json_hash,
    write_json,
)
from summ_assets.core.dataset import SplitRow, read_split
from summ_assets.core.examples import build_examples
from summ_assets.core.integrity import (
    check_json,
    check_model_folder,
    check_safetensors_file,
    first_problem,
    within,
)
from summ_assets.core.lm import set_threads
from summ_assets.core.lora import train_lora_teacher
from summ_assets.core.modelcard import card_text, write_model_card
from summ_assets.core.models import base_version, load_causal_lm, resolve_device, tokenizer_fingerprint
from summ_assets.core.profiles import Profile
from summ_assets.core.prompts import truncated_share
from summ_assets.core.records import BaseModelRef, TeacherAdapterRef
from summ_assets.core.report import curve_md
from summ_assets.core.spec import ProfileView
from summ_assets.stages.base import (
    Dist,
    Progress,
    StageError,
    StageResult,
    meta,
    profile_from_dict,
    say,
)
from summ_assets.stages.specs import TEACHER_ADAPTER, TEACHER_LOGITS


def cache_spec(
    profile: Profile | ProfileView, teacher_adapter: TeacherAdapterRef, tokenizer: Any
) -> lc.CacheSpec:
    """The capture settings and teacher identity a logit cache is written (and checked) with."""
    return lc.CacheSpec(
        mode=profile.cache.mode,
        k=profile.cache.k,
        n_samples=profile.cache.n_samples,
        teacher_fingerprint=teacher_adapter["version"],
        tokenizer_hash=tokenizer_fingerprint(tokenizer),
        chat_template_hash=sha256_bytes((tokenizer.chat_template or "").encode())[:16],
        capture_temperature=profile.student.temperature,  # at the KD temperature: exact tempered targets
    )


# --- teacher_adapter ---------------------------------------------------------------------------------


def check_teacher_adapter(folder: Path) -> str | None:
    """None when a teacher_adapter folder is whole: adapter/adapter_model.safetensors, the merged/
    model folder and metrics.json."""
    folder = Path(folder)
    return first_problem(
        lambda: check_safetensors_file(folder / "adapter" / "adapter_model.safetensors", folder),
        lambda: within("merged", check_model_folder(folder / "merged")),
        lambda: check_json(folder / "metrics.json", folder),
    )


def training_rows_digest(train_rows: list[SplitRow], val_rows: list[SplitRow]) -> str:
    """What the teacher learns from and is selected on: (section id, text, summary) of its train and val
    rows, in order."""
    return stable_json_hash(
        {
            name: [(r["section_id"], r["text"], r["summary"]) for r in rows]
            for name, rows in (("train", train_rows), ("val", val_rows))
        }
    )


def teacher_adapter_stage(
    profile: Profile | ProfileView,
    root: Path,
    teacher_base: BaseModelRef,
    summary_dataset: str,
    progress: Progress | None = None,
    log: Progress | None = None,
) -> StageResult:
    """LoRA teacher for (base, dataset, teacher config): `root/<key>/{adapter,merged}`; reused when the
    folder exists. One process (a multi-GPU box shards the 9B model with device_map="auto")."""
    from transformers import AutoTokenizer

    root = Path(root)
    profile = TEACHER_ADAPTER.view(profile)
    train_rows, val_rows = read_split(summary_dataset, "train"), read_split(summary_dataset, "val")
    # keyed by its own rows, not the dataset version: a new unlabelled document (or a new test label)
    # changes the dataset but neither retrains the teacher nor relabels what it labelled
    key = TEACHER_ADAPTER.key(
        profile.profile,
        {"base": base_version(teacher_base), "rows": training_rows_digest(train_rows, val_rows)},
    )
    target = root / key
    if not train_rows:
        raise StageError("the train split is empty: add labelled documents under data/raw and data/labels")

    def build(tmp: Path) -> None:
        tok = AutoTokenizer.from_pretrained(teacher_base["path"])
        val_examples = build_examples(
            val_rows, tok, profile.data.max_prompt_tokens, profile.data.max_summary_tokens
        )
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
        metrics["prompts_cut"] = {
            s: truncated_share([r["text"] for r in rows], tok, profile.data.max_prompt_tokens)
            for s, rows in (("train", train_rows), ("val", val_rows))
        }
        write_json(tmp / "metrics.json", metrics)
        lineage = {
            "teacher_base": teacher_base["path"],
            "summary_dataset": summary_dataset,
            "train_examples": len(train_rows),
            "val_examples": len(val_rows),
        }
        config = {**profile.settings(), "code_version": TEACHER_ADAPTER.code_version(profile.profile)}
        for sub in ("adapter", "merged"):
            write_model_card(
                tmp / sub, f"summ-assets teacher ({sub})", lineage, config, metrics, final=target / sub
            )

    cached_artifact(target, build, log=log, check=check_teacher_adapter)
    metrics = json.loads((target / "metrics.json").read_text())
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
            **(
                {"base_val_loss": meta(round(float(metrics["base_val_loss"]), 4), "float")}
                if metrics["base_val_loss"] == metrics["base_val_loss"]  # not NaN (eval.untuned_val_loss)
                else {}
            ),
            "val_loss": meta(round(float(metrics["val_loss"]), 4), "float"),
            "val_bits_per_byte": meta(
                round(float(metrics.get("val_bits_per_byte", float("nan"))), 4), "float"
            ),
            "train_seconds": meta(round(float(metrics["train_seconds"]), 1), "float"),
            "steps": meta(int(metrics["steps"]), "int"),
            "trainable_parameters": meta(int(metrics["trainable_parameters"]), "int"),
            "train_loss_curve": meta(curve_md(metrics["train_loss_curve"], "train loss"), "md"),
            "eval_loss_curve": meta(curve_md(metrics["eval_loss_curve"], "eval loss"), "md"),
            "model_card": meta(card_text(target / "merged"), "md"),
            **{
                f"prompts_cut/{s}": meta(round(float(c["share"]), 4), "float")
                for s, c in metrics.get("prompts_cut", {}).items()
            },
        },
        data_version=version,
    )


# --- teacher_logits ----------------------------------------------------------------------------------


def _load_teacher(path: str, profile: Profile | ProfileView, dist: Dist) -> Any:
    device = resolve_device(profile.device)
    if device == "cuda" and dist.world_size > 1:
        # data parallel: each rank holds a full copy on its own GPU (not device_map="auto" over all)
        return load_causal_lm(path, profile.dtype, device, device_map={"": dist.local_rank})
    return load_causal_lm(path, profile.dtype, device, profile.max_memory)


def staging_dir(root: Path, version: str, todo_keys: list[str], num_shards: int) -> Path:
    """Where the shards of one piece of work collect: same version, same new keys, same split -> same
    folder, so a re-run after a crash keeps the shards that were already written."""
    return Path(root) / "_shards" / f"{version}-{stable_json_hash(sorted(todo_keys))[:8]}-{num_shards}"


def teacher_logits_stage(
    profile: Profile | ProfileView,
    root: Path,
    teacher_adapter: TeacherAdapterRef,
    summary_dataset: str,
    prev_dir: str | None = None,
    num_shards: int = 1,
    dist: Dist | None = None,
    progress: Progress | None = None,
    log: Progress | None = None,
) -> StageResult | None:
    """Sparse teacher log-probs for every training example, in `root/<version>/part-*.parquet`.

    Incremental: shard files of `prev_dir` (the last materialization) whose spec matches are
    hard-linked and only examples with new keys are scored; a damaged shard there is not reused (its
    examples are scored again) and a damaged `root/<version>` folder is rebuilt. With `num_shards` > 1
    or several ranks (`dist`), the new examples are split by `logits_cache.shard_index`; each rank
    scores its shards into a staging folder (whole shards already there from an interrupted run are
    kept), then rank 0 merges them atomically. Returns the result on rank 0, None on the other ranks.
    """
    from transformers import AutoTokenizer

    dist = dist or Dist()
    root = Path(root)
    profile = TEACHER_LOGITS.view(profile)
    tok = AutoTokenizer.from_pretrained(teacher_adapter["merged"])
    spec = cache_spec(profile, teacher_adapter, tok)
    examples = build_examples(
        read_split(summary_dataset, "train"),
        tok,
        profile.data.max_prompt_tokens,
        profile.data.max_summary_tokens,
    )
    keys = sorted({e["example_key"] for e in examples})
    version = TEACHER_LOGITS.key(profile.profile, {"spec": spec.metadata(), "keys": keys})
    target = root / version

    def check(folder: Path) -> str | None:
        return lc.verify(folder, keys)

    # previous compatible version: reuse its whole shards, score only the new keys
    reused: dict[str, Path] = {}
    prev = Path(prev_dir) if prev_dir else None
    if prev is not None and prev.is_dir() and lc.shard_files(prev):
        try:
            reused = lc.reusable_keys(prev, spec, on_damaged=lambda msg: say(log, f"previous cache: {msg}"))
        except lc.CacheMismatchError as exc:
            say(log, f"previous cache not reusable: {exc}")
    damage = check(target) if target.exists() else None
    damaged = damage is not None
    if damaged:
        say(log, f"{target} is damaged ({damage}); rebuilding")
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

    if damaged or not target.exists():
        model_box: list = []
        if n == 1:
            # a damaged target goes aside first; its whole shards (prev_dir == target on a forced
            # re-run) are linked from there. (The sharded path leaves it to merge_shards' one rename.)
            aside = set_aside(target) if damaged else None
            sources = [
                aside / p.name if aside is not None and p.parent.absolute() == target.absolute() else p
                for p in keep
            ]

            def build(tmp: Path) -> None:
                for shard in sources:
                    lc.link_or_copy(shard, tmp / shard.name)
                if todo:
                    rows = score(todo, model_box)
                    shard_name = (
                        f"part-{stable_json_hash(sorted(r['example_key'] for r in rows))[:16]}.parquet"
                    )
                    lc.write_shard(rows, tmp / shard_name, spec, profile.cache.rows_per_group)

            try:
                cached_artifact(target, build, log=log, check=check)
            finally:
                if aside is not None:
                    remove_dir(aside)
        else:
            todo_keys = sorted(e["example_key"] for e in todo)
            staging = staging_dir(root, version, todo_keys, n)
            parts = lc.split_into_shards(todo, n)
            for i in range(dist.rank, n, dist.world_size):
                path = lc.shard_part_path(staging, i, n)
                want = {e["example_key"] for e in parts[i]}
                if path.exists():
                    if problem := lc.shard_problem(path):
                        say(log, f"shard {i}/{n}: {path} is damaged ({problem}); scoring it again")
                    elif set(lc.shard_part_keys(path)) == want:
                        say(log, f"shard {i}/{n} already scored ({len(want)} examples); keeping it")
                        continue
                rows = score(parts[i], model_box) if parts[i] else []
                lc.write_shard_part(rows, staging, i, n, spec, profile.cache.rows_per_group)
                say(log, f"rank {dist.rank}: shard {i}/{n} scored ({len(rows)} examples)")
            dist.barrier()
            if dist.rank != 0:
                return None
            merged = lc.merge_shards(staging, target, spec, n, set(todo_keys), reuse=keep)
            say(log, f"merged {n} shards into {target}: {merged}")
            shutil.rmtree(staging, ignore_errors=True)
    elif dist.rank != 0:
        return None
    stats = lc.stats(target)
    say(log, f"cache {target}: {stats}; scored {len(todo)} new, reused {len(examples) - len(todo)}")
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
            "bytes_per_position": meta(round(float(stats["bytes_per_position"]), 2), "float"),
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
