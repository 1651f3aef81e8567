"""The students' training stage: the distilled student (data + cached teacher logits + seq-KD rows) and
its CE-only baseline, one body for both (no dagster import here).

The artifact key derives from the asset's spec (`summ_assets.stages.specs`): its declared profile
fields, the prompt version and the decoding settings, plus the upstream versions.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

from summ_assets.core import logits_cache as lc
from summ_assets.core.artifacts import cached_artifact, sha256_file, stable_json_hash, write_json
from summ_assets.core.dataset import read_split
from summ_assets.core.examples import build_examples
from summ_assets.core.integrity import check_json, check_model_folder, first_problem
from summ_assets.core.kd import attach_teacher, train_student
from summ_assets.core.modelcard import card_text, write_model_card
from summ_assets.core.models import base_version, tokenizer_fingerprint
from summ_assets.core.report import curve_md
from summ_assets.core.spec import ProfileView
from summ_assets.core.vocab import (
    CHUNK_TOKENIZER,
    MAP_FILE,
    KeptVocab,
    in_student_ids,
    map_cache,
    tokenizer_hash,
)
from summ_assets.stages.base import Progress, StageError, StageResult, meta, say
from summ_assets.stages.seqkd import pseudo_examples, pseudo_rows_for


def check_student_folder(folder: Path) -> str | None:
    """None when a student folder is whole: the saved model (config + safetensors) and training_metrics.json."""
    return first_problem(
        lambda: check_model_folder(folder), lambda: check_json(folder / "training_metrics.json", folder)
    )


def weights_version(folder: Path) -> str:
    files = sorted(Path(folder).glob("*.safetensors"))
    return stable_json_hash([sha256_file(f) for f in files])[:24]


def student_stage(
    profile: ProfileView,
    root: Path,
    student_base: dict[str, Any],
    summary_dataset: str,
    teacher_logits: dict[str, Any] | None = None,
    pseudo: dict[str, Any] | None = None,
    progress: Progress | None = None,
    log: Progress | None = None,
    warn: Progress | None = None,
) -> StageResult:
    """Train a student into `root/<key>`: distilled (alpha = student.alpha) when `teacher_logits` is
    given, else the CE-only baseline (alpha 0). Reused when the folder exists and is whole."""
    from transformers import AutoTokenizer

    root = Path(root)
    distilled = teacher_logits is not None
    alpha = profile.student.alpha if distilled else 0.0
    cfg = profile.student
    # seq-KD examples go to the distilled student only; the baseline trains for as many optimizer
    # steps on its labelled data, so what separates the two is the teacher, not the step budget. Both
    # plan from the nominal seq-KD row count (a trimmed student may leave a few rows out; it then
    # makes the same number of steps over the rest)
    n_seqkd = len(pseudo_rows_for(summary_dataset, cfg.seqkd_max_examples))
    if n_seqkd and cfg.max_steps <= 0:
        n_train = len(read_split(summary_dataset, "train")) + n_seqkd
        per_epoch = math.ceil(n_train / (cfg.batch_size * cfg.grad_accum))
        profile = profile.with_values({"student.max_steps": math.ceil(per_epoch * cfg.epochs)})
    key = profile.spec.key(
        profile.profile,
        {
            "base": base_version(student_base),
            "data": summary_dataset,
            "cache": (teacher_logits or {}).get("version"),
            "seqkd": (pseudo or {}).get("version"),
            "max_steps": profile.student.max_steps,
        },
    )
    target = root / key

    def build(tmp: Path) -> None:
        base = Path(student_base["path"])
        tok = AutoTokenizer.from_pretrained(base)
        # a trimmed base: examples are tokenized with the full tokenizer (their keys find the teacher's
        # cache rows) and carried into student ids; the merge closure makes that the trimmed tokenization
        kept = KeptVocab.load(base) if (base / MAP_FILE).exists() else None
        full_tok = AutoTokenizer.from_pretrained(base / CHUNK_TOKENIZER) if kept else tok
        if kept and kept.tokenizer_hash != tokenizer_hash(full_tok):
            raise StageError(
                f"{base}: its vocabulary map does not match its full tokenizer (student.vocab_size)"
            )
        dp = profile.data
        train = build_examples(
            read_split(summary_dataset, "train"), full_tok, dp.max_prompt_tokens, dp.max_summary_tokens
        )
        if kept:
            train, left_out = in_student_ids(train, kept)
            if left_out:
                raise StageError(
                    f"{left_out} training examples use tokens {base} does not keep: the trimmed base is stale; "
                    "re-materialize student_trimmed_base"
                )
        val_rows = read_split(summary_dataset, "val")
        val = build_examples(val_rows, tok, dp.max_prompt_tokens, dp.max_summary_tokens)
        if not train:
            raise StageError("the train split is empty")
        spec = None
        seqkd = {"joined": 0, "left_out": 0}
        if teacher_logits is not None:
            spec = lc.CacheSpec.from_metadata(teacher_logits["spec"])
            if spec.tokenizer_hash != tokenizer_fingerprint(full_tok):
                raise StageError(
                    "teacher logit cache was made with another tokenizer than the student's"
                    + (
                        " full tokenizer: the vocabulary map does not match the cache (student.vocab_size)"
                        if kept
                        else ""
                    )
                )
            if spec.capture_temperature != profile.student.temperature:
                say(
                    warn or log,
                    f"teacher logits were captured at T={spec.capture_temperature}, the student trains at "
                    f"T={profile.student.temperature}: the cached buckets are re-tempered (tail as one bucket, "
                    "approximate); re-materialize teacher_logits for exact targets",
                )
            cache = lc.load(Path(teacher_logits["path"]), spec, {e["example_key"] for e in train})
            train = attach_teacher(train, map_cache(cache, kept) if kept else cache)
            if pseudo is not None:
                extra = pseudo_examples(pseudo, full_tok, profile, spec, kept)
                seqkd = {"joined": len(extra), "left_out": int(pseudo.get("n") or 0) - len(extra)}
                say(
                    log,
                    f"seq-KD: {len(extra)} teacher-summarized unlabelled sections join the data"
                    + (
                        f" ({seqkd['left_out']} use tokens the trimmed student lacks)"
                        if seqkd["left_out"]
                        else ""
                    ),
                )
                train = train + extra
        metrics = train_student(
            base,
            train,
            val,
            profile,
            root / "_work" / key,
            tmp,
            alpha=alpha,
            progress=progress,
            val_rows=val_rows,
            teacher_spec=spec,
            # the untuned base's val loss: scored once, by the CE baseline (the report reads it there)
            score_base=not distilled and profile.eval.untuned_val_loss,
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
        title = "summ-assets distilled student" if distilled else "summ-assets CE-only student baseline"
        config = {
            **profile.settings(),
            "alpha": alpha,
            "code_version": profile.spec.code_version(profile.profile),
        }
        write_model_card(tmp, title, lineage, config, metrics, final=target)

    cached_artifact(target, build, log=log, check=check_student_folder)
    metrics = json.loads((target / "training_metrics.json").read_text())
    version = weights_version(target)
    base_loss = metrics["base_val_loss"]
    return StageResult(
        value={"path": str(target), "version": version, "alpha": alpha},
        metadata={
            "artifact": meta(str(target), "path"),
            "alpha": meta(float(alpha), "float"),
            "val_loss": meta(round(float(metrics["val_loss"]), 4), "float"),
            # NaN: not scored (only the baseline scores the untuned base)
            **(
                {"base_val_loss": meta(round(float(base_loss), 4), "float")} if base_loss == base_loss else {}
            ),
            "val_bits_per_byte": meta(
                round(float(metrics.get("val_bits_per_byte", float("nan"))), 4), "float"
            ),
            "train_seconds": meta(round(float(metrics["train_seconds"]), 1), "float"),
            "seconds_per_step": meta(round(float(metrics["seconds_per_step"]), 3), "float"),
            "steps": meta(int(metrics["steps"]), "int"),
            "planned_steps": meta(int(metrics["planned_steps"]), "int"),
            "train_examples": meta(int(metrics["train_examples"]), "int"),
            "seqkd_examples": meta(int(metrics.get("seqkd_examples", 0)), "int"),
            "seqkd_left_out": meta(int(metrics.get("seqkd_left_out", 0)), "int"),
            "parameters": meta(int(metrics["parameters"]), "int"),
            "trainable_parameters": meta(int(metrics["trainable_parameters"]), "int"),
            "train_loss_curve": meta(curve_md(metrics["train_loss_curve"], "train loss"), "md"),
            "model_card": meta(card_text(target), "md"),
        },
        data_version=version,
    )
