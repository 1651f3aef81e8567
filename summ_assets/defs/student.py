"""Student half: the distilled student (data + cached teacher logits) and its CE-only baseline."""

import json
import math
import shutil
from dataclasses import asdict, replace
from pathlib import Path

import dagster as dg

from summ_assets.core import logits_cache as lc
from summ_assets.core.artifacts import cached_artifact, sha256_file, stable_json_hash, write_json
from summ_assets.core.dataset import read_split
from summ_assets.core.examples import build_examples
from summ_assets.core.integrity import check_json, check_model_folder, first_problem
from summ_assets.core.kd import attach_teacher, train_student
from summ_assets.core.modelcard import write_model_card
from summ_assets.core.models import base_version, tokenizer_fingerprint
from summ_assets.core.report import curve_md
from summ_assets.core.vocab import (
    CHUNK_TOKENIZER,
    MAP_FILE,
    KeptVocab,
    in_student_ids,
    map_cache,
    tokenizer_hash,
)
from summ_assets.defs.common import DECODING_FIELDS, GPU_POOL, STUDENT_GROUP, code_version, progress_logger
from summ_assets.defs.resources import ComputeResource, SummSettings
from summ_assets.stages.seqkd import pseudo_examples, pseudo_rows_for

GROUP = STUDENT_GROUP


def check_student_folder(folder: Path) -> str | None:
    """None when a student folder is whole: the saved model (config + safetensors) and training_metrics.json."""
    return first_problem(
        lambda: check_model_folder(folder), lambda: check_json(folder / "training_metrics.json", folder)
    )


def _weights_version(folder: Path) -> str:
    files = sorted(folder.glob("*.safetensors"))
    return stable_json_hash([sha256_file(f) for f in files])[:24]


def _train(
    context: dg.AssetExecutionContext,
    settings: SummSettings,
    compute: ComputeResource,
    asset: str,
    code_version: str,
    student_base: dict,
    summary_dataset: str,
    teacher_logits: dict | None,
    pseudo: dict | None = None,
) -> dg.Output:
    from transformers import AutoTokenizer

    profile = compute.configure(settings.get_profile(), log=context.log)
    alpha = profile.student.alpha if teacher_logits is not None else 0.0
    cfg = profile.student
    # seq-KD examples go to the distilled student only; the baseline trains for as many optimizer
    # steps on its labelled data, so what separates the two is the teacher, not the step budget. Both
    # plan from the nominal seq-KD row count (a trimmed student may leave a few rows out; it then
    # makes the same number of steps over the rest)
    n_seqkd = len(pseudo_rows_for(summary_dataset, cfg.seqkd_max_examples))
    if n_seqkd and cfg.max_steps <= 0:
        n_train = len(read_split(summary_dataset, "train")) + n_seqkd
        per_epoch = math.ceil(n_train / (cfg.batch_size * cfg.grad_accum))
        profile = replace(profile, student=replace(cfg, max_steps=math.ceil(per_epoch * cfg.epochs)))
    key = stable_json_hash(
        {
            "base": base_version(student_base),
            "data": summary_dataset,
            "cache": (teacher_logits or {}).get("version"),
            "seqkd": (pseudo or {}).get("version"),
            "max_steps": profile.student.max_steps,
            "cfg": asdict(profile.student),
            "d": asdict(profile.data),
            "alpha": alpha,
            "code": code_version,
        }
    )[:16]
    root = settings.asset_dir(asset)
    target = root / key

    def build(tmp: Path) -> None:
        base = Path(student_base["path"])
        tok = AutoTokenizer.from_pretrained(base)
        # a trimmed base: examples are tokenized with the full tokenizer (their keys find the teacher's
        # cache rows) and carried into student ids; the merge closure makes that the trimmed tokenization
        kept = KeptVocab.load(base) if (base / MAP_FILE).exists() else None
        full_tok = AutoTokenizer.from_pretrained(base / CHUNK_TOKENIZER) if kept else tok
        if kept and kept.tokenizer_hash != tokenizer_hash(full_tok):
            raise dg.Failure(
                f"{base}: its vocabulary map does not match its full tokenizer (student.vocab_size)"
            )
        dp = profile.data
        train = build_examples(
            read_split(summary_dataset, "train"), full_tok, dp.max_prompt_tokens, dp.max_summary_tokens
        )
        if kept:
            train, left_out = in_student_ids(train, kept)
            if left_out:
                raise dg.Failure(
                    f"{left_out} training examples use tokens {base} does not keep: the trimmed base is stale; "
                    "re-materialize student_trimmed_base"
                )
        val_rows = read_split(summary_dataset, "val")
        val = build_examples(val_rows, tok, dp.max_prompt_tokens, dp.max_summary_tokens)
        if not train:
            raise dg.Failure("the train split is empty")
        spec = None
        seqkd = {"joined": 0, "left_out": 0}
        if teacher_logits is not None:
            spec = lc.CacheSpec.from_metadata(teacher_logits["spec"])
            if spec.tokenizer_hash != tokenizer_fingerprint(full_tok):
                raise dg.Failure(
                    "teacher logit cache was made with another tokenizer than the student's"
                    + (
                        " full tokenizer: the vocabulary map does not match the cache (student.vocab_size)"
                        if kept
                        else ""
                    )
                )
            if spec.capture_temperature != profile.student.temperature:
                context.log.warning(
                    f"teacher logits were captured at T={spec.capture_temperature}, the student trains at "
                    f"T={profile.student.temperature}: the cached buckets are re-tempered (tail as one bucket, "
                    "approximate); re-materialize teacher_logits for exact targets"
                )
            cache = lc.load(Path(teacher_logits["path"]), spec, {e["example_key"] for e in train})
            train = attach_teacher(train, map_cache(cache, kept) if kept else cache)
            if pseudo is not None:
                extra = pseudo_examples(pseudo, full_tok, profile, spec, kept)
                seqkd = {"joined": len(extra), "left_out": int(pseudo.get("n") or 0) - len(extra)}
                context.log.info(
                    f"seq-KD: {len(extra)} teacher-summarized unlabelled sections join the data"
                    + (
                        f" ({seqkd['left_out']} use tokens the trimmed student lacks)"
                        if seqkd["left_out"]
                        else ""
                    )
                )
                train = train + extra
        metrics = train_student(
            Path(student_base["path"]),
            train,
            val,
            profile,
            root / "_work" / key,
            tmp,
            alpha=alpha,
            progress=progress_logger(context),
            val_rows=val_rows,
            teacher_spec=spec,
            # the untuned base's val loss: scored once, by the CE baseline (the report reads it there)
            score_base=alpha == 0 and profile.eval.untuned_val_loss,
        )
        metrics["train_examples"] = len(train)
        metrics["seqkd_examples"], metrics["seqkd_left_out"] = seqkd["joined"], seqkd["left_out"]
        if kept:  # the id map and the full tokenizer travel with the model (serving cuts sections with it)
            kept.save(tmp)
            shutil.copytree(base / CHUNK_TOKENIZER, tmp / CHUNK_TOKENIZER)
            metrics["vocab_size"] = kept.size
        write_json(tmp / "training_metrics.json", metrics)
        lineage = {
            "student_base": student_base["path"],
            "summary_dataset": summary_dataset,
            "teacher_logits": (teacher_logits or {}).get("path"),
            "teacher_pseudo_summaries": (pseudo or {}).get("path"),
            "train_examples": len(train),
            "vocabulary": kept.summary() if kept else "full",
        }
        title = "summ-assets distilled student" if alpha > 0 else "summ-assets CE-only student baseline"
        write_model_card(tmp, title, lineage, {**asdict(profile.student), "alpha": alpha}, metrics)

    cached_artifact(target, build, log=context.log.info, check=check_student_folder)
    metrics = json.loads((target / "training_metrics.json").read_text())
    version = _weights_version(target)
    return dg.Output(
        {"path": str(target), "version": version, "alpha": alpha},
        data_version=dg.DataVersion(version),
        metadata={
            "artifact": dg.MetadataValue.path(str(target)),
            "alpha": float(alpha),
            "val_loss": float(metrics["val_loss"]),
            **(
                {"base_val_loss": float(metrics["base_val_loss"])}
                if metrics["base_val_loss"]
                == metrics["base_val_loss"]  # not NaN (only the baseline scores it)
                else {}
            ),
            "val_bits_per_byte": float(metrics.get("val_bits_per_byte", float("nan"))),
            "train_seconds": float(metrics["train_seconds"]),
            "seconds_per_step": float(metrics["seconds_per_step"]),
            "steps": int(metrics["steps"]),
            "planned_steps": int(metrics["planned_steps"]),
            "train_examples": int(metrics["train_examples"]),
            "seqkd_examples": int(metrics.get("seqkd_examples", 0)),
            "seqkd_left_out": int(metrics.get("seqkd_left_out", 0)),
            "parameters": int(metrics["parameters"]),
            "trainable_parameters": int(metrics["trainable_parameters"]),
            "train_loss_curve": dg.MetadataValue.md(curve_md(metrics["train_loss_curve"], "train loss")),
        },
    )


@dg.asset(
    group_name=GROUP,
    pool=GPU_POOL,
    code_version=code_version("student-model-v4", "student", "data", *DECODING_FIELDS, prompt=True),
    kinds={"pytorch", "huggingface"},
    description="The student distilled from data + cached teacher logits (alpha*T^2*KL + (1-alpha)*CE), "
    "plus the teacher's summaries of unlabelled sections (sequence-level KD).",
)
def student_model(
    context: dg.AssetExecutionContext,
    settings: SummSettings,
    compute: ComputeResource,
    student_trimmed_base: dict,
    summary_dataset: str,
    teacher_logits: dict,
    teacher_pseudo_summaries: dict,
) -> dg.Output:
    return _train(
        context,
        settings,
        compute,
        "student_model",
        "student-model-v4",
        student_trimmed_base,
        summary_dataset,
        teacher_logits,
        teacher_pseudo_summaries,
    )


@dg.asset(
    group_name=GROUP,
    pool=GPU_POOL,
    code_version=code_version("student-baseline-v4", "student", "data", *DECODING_FIELDS, prompt=True),
    kinds={"pytorch", "huggingface"},
    description="The same student, data, steps and learning rate, CE only: what distillation must beat.",
)
def student_baseline(
    context: dg.AssetExecutionContext,
    settings: SummSettings,
    compute: ComputeResource,
    student_trimmed_base: dict,
    summary_dataset: str,
) -> dg.Output:
    return _train(
        context,
        settings,
        compute,
        "student_baseline",
        "student-baseline-v4",
        student_trimmed_base,
        summary_dataset,
        None,
    )
