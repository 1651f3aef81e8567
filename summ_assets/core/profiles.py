"""Profiles: one named set of sizes, model sources and hyperparameters.

A profile is data, not code branches: every stage reads the numbers it needs from here, and the
graph is the same for `tiny` (tests), `demo` (offline CPU default) and `gemma2` (GPU production).
Select one with the environment variable ``SUMM_PROFILE`` (default ``demo``).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from summ_assets.core.prompts import END_OF_TURN

PROFILE_ENV = "SUMM_PROFILE"
DEFAULT_PROFILE = "demo"

ALL_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class DataConfig:
    max_section_tokens: int = 384  # token budget per section (student tokenizer)
    min_section_tokens: int = 8  # trailing fragments below this merge into the previous part
    max_file_bytes: int = 2_000_000
    max_prompt_tokens: int = 256  # section text is truncated to this many tokens inside the prompt
    max_summary_tokens: int = 64
    # split fractions for documents under raw/ (hash of the section id decides)
    val_fraction: float = 0.12
    test_seen_fraction: float = 0.08
    # caps per split (None = all); demo uses subsets to fit its time budget
    max_train: int | None = None
    max_val: int | None = None
    max_test: int | None = None
    label_strictness: str = "fail"  # "fail" | "warn"


@dataclass(frozen=True)
class TeacherConfig:
    source: str = "tiny:teacher"  # "tiny:teacher" | "gguf:gemma3-270m" | hub id | local folder
    epochs: float = 3.0
    max_steps: int = -1
    batch_size: int = 2
    grad_accum: int = 1
    learning_rate: float = 2e-4
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = ALL_PROJECTIONS
    save_steps: int = 50
    load_in_4bit: bool = False
    # embedding rows trained besides the adapter (peft `trainable_token_indices`): a pretrained, not
    # instruction-tuned base never learned to end a turn, so without this its summaries never stop
    train_tokens: tuple[str, ...] = (END_OF_TURN,)


@dataclass(frozen=True)
class CacheConfig:
    mode: str = "topk"  # "topk" | "sampled"
    k: int = 64
    n_samples: int = 64  # draws per position in "sampled" mode
    batch_size: int = 4
    rows_per_group: int = 256


@dataclass(frozen=True)
class StudentConfig:
    source: str = "tiny:student"  # "tiny:student" | "prune:<layers>" | hub id | local folder
    train_mode: str = "full"  # "full" | "lora"
    freeze_embeddings: bool = True
    # rows of the (tied) embedding that train even when the embedding is frozen (see TeacherConfig)
    train_tokens: tuple[str, ...] = (END_OF_TURN,)
    epochs: float = 3.0
    max_steps: int = -1
    batch_size: int = 2
    grad_accum: int = 1
    learning_rate: float = 2e-4
    alpha: float = 0.5  # weight of the KD term; (1 - alpha) weights CE
    temperature: float = 1.0
    divergence: str = "forward_kl"  # "forward_kl" | "reverse_kl" | "jsd"
    lora_r: int = 16
    lora_alpha: int = 32
    gradient_checkpointing: bool = False
    save_steps: int = 50
    # model selection: greedy val ROUGE-Lsum after each epoch, keep the best epoch's weights
    select_on_val_rouge: bool = True
    early_stopping_patience: int = 1  # epochs without improvement before stopping (0 = never)
    # sequence-level KD: teacher summaries of this many unlabelled sections join the student's data
    # (None = all, 0 = off); the baseline then trains for the same number of steps on labelled data.
    # Off by default: on the demo it lowered val ROUGE-Lsum (README, "Distillation notes").
    seqkd_max_examples: int | None = 0


@dataclass(frozen=True)
class EvalConfig:
    max_new_tokens: int = 48
    batch_size: int = 8
    do_sample: bool = False
    bertscore_model: str = "teacher_base"  # "teacher_base" (hidden states of the base) or a local folder
    bertscore_layer: int | None = None  # None = middle layer of the model
    bootstrap_samples: int = 1000
    seed: int = 0
    max_examples_per_set: int | None = None
    gate_tolerance: float = 0.02
    max_empty_share: float = 0.5


@dataclass(frozen=True)
class Profile:
    name: str
    device: str = "cpu"  # "cpu" | "cuda" | "auto"
    dtype: str = "float32"
    threads: int | None = None  # torch threads on CPU; None = all cores
    max_memory: str | None = None  # cap per GPU for device_map="auto" (e.g. "20GiB"); None = no cap
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


TINY = Profile(
    name="tiny",
    threads=1,
    data=DataConfig(max_section_tokens=1024, max_prompt_tokens=96, max_summary_tokens=32),
    # train_tokens=(): the tiny models start from random weights, so an <end_of_turn> row trained at
    # lr 3e-3 becomes their first guess and every summary comes out empty (the non-empty gate stops the
    # chain); tests that cover row training turn it on explicitly
    teacher=TeacherConfig(
        source="tiny:teacher",
        epochs=2,
        batch_size=4,
        learning_rate=3e-3,
        lora_r=8,
        lora_alpha=16,
        train_tokens=(),
    ),
    cache=CacheConfig(mode="topk", k=16, batch_size=8),
    student=StudentConfig(
        source="tiny:student",
        epochs=2,
        batch_size=4,
        learning_rate=3e-3,
        temperature=1.0,
        seqkd_max_examples=None,  # tests exercise the seq-KD path
        train_tokens=(),
    ),
    eval=EvalConfig(max_new_tokens=16, batch_size=16, bootstrap_samples=200, bertscore_layer=1),
)

DEMO = Profile(
    name="demo",
    threads=2,
    data=DataConfig(
        max_section_tokens=384,
        max_prompt_tokens=96,
        max_summary_tokens=40,
        max_train=96,
        max_val=12,
        max_test=6,
    ),
    teacher=TeacherConfig(
        source="gguf:gemma3-270m",
        epochs=1,
        batch_size=4,
        learning_rate=5e-4,
        lora_r=16,
        lora_alpha=32,
        save_steps=12,
    ),
    cache=CacheConfig(mode="topk", k=32, batch_size=8),
    student=StudentConfig(
        # drop the contiguous block 6-9: lowest summary loss of all 4-layer blocks before any training
        # (4.95 vs 14.3 for the every-other-layer cut used before; benchmarks/prune_probe.py)
        source="prune:0,1,2,3,4,5,10,11,12,13,14,15,16,17",
        epochs=1,
        batch_size=4,
        learning_rate=1e-4,
        # swept 0.0 / 0.5 / 0.8 / 1.0 on the uncapped val split (benchmarks/tune_kd.py, README): 0.5 gave
        # +0.035 ROUGE-Lsum over CE and, unlike 0.8 / 1.0, ends the seed's RAG example after one sentence
        alpha=0.5,
        temperature=1.0,
        save_steps=12,
    ),
    eval=EvalConfig(max_new_tokens=40, batch_size=8, bootstrap_samples=1000),
)

GEMMA2 = Profile(
    name="gemma2",
    device="cuda",
    dtype="bfloat16",
    data=DataConfig(max_section_tokens=768, max_prompt_tokens=1024, max_summary_tokens=128),
    teacher=TeacherConfig(
        source="google/gemma-2-9b-it", epochs=3, batch_size=2, learning_rate=2e-4, save_steps=200
    ),
    cache=CacheConfig(mode="topk", k=64, batch_size=4),
    student=StudentConfig(
        source="google/gemma-2-2b-it",
        epochs=3,
        batch_size=2,
        learning_rate=2e-4,
        freeze_embeddings=False,
        save_steps=200,
    ),
    eval=EvalConfig(max_new_tokens=128, batch_size=16, bertscore_model="teacher_base"),
)

PROFILES: dict[str, Profile] = {p.name: p for p in (TINY, DEMO, GEMMA2)}


def get_profile(name: str | None = None) -> Profile:
    """Return the profile called `name`, or the one named by $SUMM_PROFILE (default `demo`).

    Model sources can be overridden without editing code: ``SUMM_TEACHER_SOURCE`` and
    ``SUMM_STUDENT_SOURCE`` (hub id or local folder).
    """
    name = name or os.environ.get(PROFILE_ENV) or DEFAULT_PROFILE
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r} (from ${PROFILE_ENV}); choose one of {sorted(PROFILES)}")
    profile = PROFILES[name]
    teacher_src = os.environ.get("SUMM_TEACHER_SOURCE")
    student_src = os.environ.get("SUMM_STUDENT_SOURCE")
    if teacher_src:
        profile = replace(profile, teacher=replace(profile.teacher, source=teacher_src))
    if student_src:
        profile = replace(profile, student=replace(profile.student, source=student_src))
    return profile
