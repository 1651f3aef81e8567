"""What each asset's result depends on: one `AssetSpec` per asset, the only place it is declared.

The Dagster layer takes each asset's ``code_version`` from here and every stage computes its artifact
key from the same spec (`summ_assets.core.spec`), through a profile view that refuses undeclared
reads. Bump an asset's `code` tag when its body changes meaning; add a field here when a body starts
reading it (the first run that reads an undeclared field fails and names it). A test runs the `tiny`
graph and checks that each asset reads exactly the fields declared here.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from summ_assets.core.spec import AssetSpec

_CORE = Path(__file__).resolve().parents[1] / "core"
# the evaluation code's own version: any change to scoring, statistics or gates re-scores
EVAL_CODE = hashlib.sha256(
    b"".join(
        (_CORE / f).read_bytes()
        for f in ("report.py", "metrics.py", "stats.py", "gates.py", "degeneration.py")
    )
).hexdigest()[:10]

_PROMPT_DATA = ("data.max_prompt_tokens", "data.max_summary_tokens")
_TRAINING = (
    "epochs",
    "max_steps",
    "batch_size",
    "grad_accum",
    "learning_rate",
    "lora_r",
    "lora_alpha",
    "save_steps",
    "train_tokens",
)


def _in(section: str, names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{section}.{n}" for n in names)


TEACHER_BASE = AssetSpec("teacher_base", "teacher-base-v2", ("teacher.source", "seed"))
STUDENT_BASE = AssetSpec("student_base", "student-base-v2", ("student.source", "seed"))
RAW_DOCUMENTS = AssetSpec("raw_documents", "raw-documents-v2", ("data.max_file_bytes",))
DOCUMENT_SECTIONS = AssetSpec(
    "document_sections",
    "document-sections-v2",
    ("data.max_file_bytes", "data.max_section_tokens", "data.min_section_tokens"),
)
CORPUS_MANIFEST = AssetSpec("corpus_manifest", "corpus-manifest-v2")
SUMMARY_DATASET = AssetSpec(
    "summary_dataset",
    "summary-dataset-v2",
    (
        "data.val_min_examples",
        "data.val_max_doc_fraction",
        "data.val_min_documents",
        "data.val_max_sections_per_document",
        "data.test_seen_fraction",
        "data.max_train",
        "data.label_strictness",
    ),
)
TEACHER_ADAPTER = AssetSpec(
    "teacher_adapter",
    "teacher-adapter-v3",
    (
        *_in("teacher", _TRAINING),
        "teacher.lora_dropout",
        "teacher.target_modules",
        "teacher.load_in_4bit",
        *_PROMPT_DATA,
        "dtype",
        "seed",
        "eval.untuned_val_loss",
    ),
    prompt=True,
    decoding=True,
)
TEACHER_LOGITS = AssetSpec(
    "teacher_logits",
    "teacher-logits-v2",
    (
        "cache.mode",
        "cache.k",
        "cache.n_samples",
        "cache.batch_size",
        "cache.rows_per_group",
        "student.temperature",
        *_PROMPT_DATA,
        "dtype",
        "seed",
    ),
    prompt=True,
)
TEACHER_PSEUDO_SUMMARIES = AssetSpec(
    "teacher_pseudo_summaries",
    "teacher-pseudo-summaries-v3",
    (
        "student.seqkd_max_examples",
        "student.temperature",
        "cache.mode",
        "cache.k",
        "cache.n_samples",
        "cache.batch_size",
        "cache.rows_per_group",
        *_PROMPT_DATA,
        "eval.batch_size",
        # the teacher decodes at most data.max_summary_tokens, with the pipeline's repetition control
        "eval.no_repeat_ngram_size",
        "eval.repetition_penalty",
        "eval.one_sentence",
        "dtype",
        "seed",
    ),
    prompt=True,
)
STUDENT_TRIMMED_BASE = AssetSpec(
    "student_trimmed_base",
    "student-trimmed-base-v2",
    ("student.vocab_size", "student.seqkd_max_examples", *_PROMPT_DATA),
    prompt=True,
)
_STUDENT_TRAINING = (
    *_in("student", _TRAINING),
    "student.train_mode",
    "student.freeze_embeddings",
    "student.gradient_checkpointing",
    "student.select_on_val_rouge",
    "student.early_stopping_patience",
    "student.seqkd_max_examples",
    "teacher.target_modules",  # the LoRA student (student.train_mode = "lora") adapts the same projections
    *_PROMPT_DATA,
    "dtype",
    "seed",
    "eval.batch_size",  # early stopping decodes val in batches
)
STUDENT_MODEL = AssetSpec(
    "student_model",
    "student-model-v5",
    (*_STUDENT_TRAINING, "student.alpha", "student.temperature", "student.divergence"),
    prompt=True,
    decoding=True,
)
# the CE baseline: no KD settings (alpha is 0), but it scores the untuned base's val loss once
STUDENT_BASELINE = AssetSpec(
    "student_baseline",
    "student-baseline-v5",
    (*_STUDENT_TRAINING, "eval.untuned_val_loss"),
    prompt=True,
    decoding=True,
)
_GENERATION = (
    "data.max_prompt_tokens",
    "eval.batch_size",
    "eval.do_sample",
    "eval.seed",
    "eval.speed_batch",
    "eval.speed_tokens",
    "eval.test_sample",
    "eval.sample_models",
    "eval.sample_val_models",
    "dtype",
)
GENERATIONS = {
    name: AssetSpec(f"{name}_generations", "generations-v3", _GENERATION, prompt=True, decoding=True)
    for name in ("teacher", "student", "baseline", "student_base")
}
_REPORT = (
    "eval.bertscore_model",
    "eval.bertscore_layer",
    "eval.bootstrap_samples",
    "eval.permutation_resamples",
    "eval.seed",
    "eval.baseline_gate",
    "eval.gate_alpha",
    "eval.regress_margin",
    "eval.max_empty_share",
    "eval.max_degenerate_share",
)
# the demo's sampled evaluation (the gates and promotion read it): the profile's test samples
EVALUATION_REPORT = AssetSpec(
    "evaluation_report",
    f"evaluation-report-v3-{EVAL_CODE}",
    # the promoted student's val outputs are generated like any model's (when it is not the new one)
    (*_REPORT, *_GENERATION),
    prompt=True,
    decoding=True,
)
# every model on every example of every set (`make eval-full`): a separate result, so neither scope
# makes the other stale; the scope settings are pinned, not read
_FULL = ("eval.test_sample", "eval.sample_models", "eval.sample_val_models")
EVALUATION_REPORT_FULL = AssetSpec(
    "evaluation_report_full",
    f"evaluation-report-full-v1-{EVAL_CODE}",
    (*_REPORT, *(f for f in _GENERATION if f not in _FULL)),
    prompt=True,
    decoding=True,
    fixed=(
        ("eval.test_sample", None),
        ("eval.sample_models", ("teacher", "student", "baseline", "student_base")),
        ("eval.sample_val_models", ("teacher", "student", "baseline", "student_base")),
    ),
)
PROMOTED_STUDENT = AssetSpec("promoted_student", "promoted-student-v3")
# the training pool's sections, for `compare --against corpus` (no setting shapes it)
SECTION_INDEX = AssetSpec("section_index", "section-index-v1")
# a document against its previous version; the summaries come from the promoted student's folder (its
# own decoding and prompt budget, all in the summary cache's key), read at run time, not a dependency:
# a promotion does not make every document's comparison stale
DOCUMENT_CHANGES = AssetSpec("document_changes", "document-changes-v1", ("data.max_file_bytes",))

SPECS: dict[str, AssetSpec] = {
    s.name: s
    for s in (
        TEACHER_BASE,
        STUDENT_BASE,
        RAW_DOCUMENTS,
        DOCUMENT_SECTIONS,
        CORPUS_MANIFEST,
        SUMMARY_DATASET,
        TEACHER_ADAPTER,
        TEACHER_LOGITS,
        TEACHER_PSEUDO_SUMMARIES,
        STUDENT_TRIMMED_BASE,
        STUDENT_MODEL,
        STUDENT_BASELINE,
        *GENERATIONS.values(),
        EVALUATION_REPORT,
        EVALUATION_REPORT_FULL,
        PROMOTED_STUDENT,
        SECTION_INDEX,
        DOCUMENT_CHANGES,
    )
}
