"""Names and small helpers every asset module shares: pool, owners, groups, partitions, metadata."""

import json
from dataclasses import asdict
from typing import Any

import dagster as dg

from summ_assets.core import profiles
from summ_assets.core.artifacts import stable_json_hash

GPU_POOL = "gpu"
# Who answers for every asset (shown in the UI's asset pages); applied once in definitions.py.
OWNERS = ("team:ml-platform",)
DOCUMENTS = dg.DynamicPartitionsDefinition(name="documents")

# asset groups (the UI's lanes; automation selects by them)
MODELS_GROUP = "models"
INGEST_GROUP = "ingest"
TEACHER_GROUP = "teacher"
STUDENT_GROUP = "student"
EVALUATION_GROUP = "evaluation"
GROUPS = (MODELS_GROUP, INGEST_GROUP, TEACHER_GROUP, STUDENT_GROUP, EVALUATION_GROUP)


def json_md(obj: Any) -> dg.MetadataValue:
    return dg.MetadataValue.json(json.loads(json.dumps(obj, default=str)))


def progress_logger(context: dg.AssetExecutionContext, every: int = 1):  # noqa: ANN201
    """A `Progress` callable that logs every `every`-th message to the run's event log."""
    counter = {"n": 0}

    def log(msg: str) -> None:
        counter["n"] += 1
        if counter["n"] % every == 0:
            context.log.info(msg)

    return log


# what a saved model's generation_config.json holds (and early stopping decodes with): the models carry it
DECODING_FIELDS = ("eval.max_new_tokens", "eval.no_repeat_ngram_size", "eval.repetition_penalty")


def code_version(base: str, *sections: str, prompt: bool = False) -> str:
    """`base` + a short hash of the profile sections (or dotted fields) the asset reads.

    A profile is configuration, invisible to Dagster; folding the relevant part into the code version
    makes a changed setting (e.g. the LoRA rank) mark exactly the assets that read it as stale. With
    `prompt`, the prompt builder's version (`core.prompts.prompt_version`: template, instruction,
    cleaner) is folded in too, for every asset that builds prompts.
    """
    if prompt:
        from summ_assets.core.prompts import prompt_version

        base = f"{base}+{prompt_version()}"
    if not sections:
        return base
    prof = asdict(profiles.get_profile())

    def pick(path: str) -> object:
        value: object = prof
        for part in path.split("."):
            value = value[part]  # type: ignore[index]
        return value

    return f"{base}+{stable_json_hash({s: pick(s) for s in sections})[:8]}"
