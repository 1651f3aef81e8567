"""Profiles: one named set of sizes, model sources and hyperparameters.

A profile is data, not code branches: every stage reads the numbers it needs from here, and the
graph is the same for `tiny` (tests), `demo` (offline CPU default) and `gemma2` (GPU production).
Select one with the environment variable ``SUMM_PROFILE`` (default ``demo``).

Every config dataclass validates itself in ``__post_init__`` (so ``dataclasses.replace`` and
rebuilding from a dict are checked too): a field with a fixed set of values must hold one of the
tuples below (import them instead of repeating the strings), numbers must lie in their range, and a
bad value raises `ProfileError` naming the class, the field, the value and what is allowed.
Why the shipped values are what they are (sweeps, probes): README 'Why each setting'.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any, NoReturn

from summ_assets.core import env
from summ_assets.core.prompts import END_OF_TURN

PROFILE_ENV = env.PROFILE
DEFAULT_PROFILE = "demo"

ALL_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

# fixed value sets of the choice fields
DEVICES = ("cpu", "cuda", "auto")  # Profile.device ("auto" = cuda when usable, else cpu)
DTYPES = ("float32", "bfloat16", "float16")  # Profile.dtype (core/models.py torch_dtype)
LABEL_STRICTNESS = ("fail", "warn")  # DataConfig.label_strictness (core/labels.py enforce)
CACHE_MODES = ("topk", "sampled")  # CacheConfig.mode (core/logits_cache.py sparse_targets)
TRAIN_MODES = ("full", "lora")  # StudentConfig.train_mode (core/kd.py)
DIVERGENCES = ("forward_kl", "reverse_kl", "jsd")  # StudentConfig.divergence (core/kd.py)
# EvalConfig.baseline_gate: "not_worse" fails when the CI of (student - baseline) on val lies below 0;
# "better" fails unless it lies above 0; "report_only" records and passes (tiny: random weights) (core/gates.py)
BASELINE_GATES = ("not_worse", "better", "report_only")
EVAL_SCOPES = ("sample", "full")
EVAL_MODELS = (
    "teacher",
    "student",
    "baseline",
    "student_base",
)  # the evaluated models (defs/generations.py)  # $SUMM_EVAL_SCOPE: the profile's test samples, or every test example

_MEMORY = re.compile(r"^\d+(\.\d+)?\s*(GiB|MiB|GB|MB)$")  # Profile.max_memory, e.g. "20GiB"


class ProfileError(ValueError):
    """A profile field holds a value its readers cannot use."""


def _fail(obj: object, name: str, what: str) -> NoReturn:
    raise ProfileError(f"{type(obj).__name__}.{name}={getattr(obj, name)!r}: {what}")


def _choice(obj: object, name: str, allowed: tuple[str, ...]) -> None:
    value = getattr(obj, name)
    if not isinstance(value, str) or value not in allowed:
        _fail(obj, name, f"choose one of {allowed}")


def _flag(obj: object, name: str) -> None:
    if not isinstance(getattr(obj, name), bool):
        _fail(obj, name, "must be True or False")


def _text(obj: object, name: str) -> None:
    value = getattr(obj, name)
    if not isinstance(value, str) or not value.strip():
        _fail(obj, name, "must be a non-empty string")


def _strings(obj: object, name: str, *, non_empty: bool = False) -> None:
    value = getattr(obj, name)
    ok = isinstance(value, tuple) and all(isinstance(s, str) and s for s in value)
    if not ok or (non_empty and not value):
        _fail(obj, name, f"must be a {'non-empty ' if non_empty else ''}tuple of non-empty strings")


def _number(
    obj: object,
    name: str,
    lo: float | None = None,
    hi: float | None = None,
    *,
    integer: bool = False,
    lo_open: bool = False,
    hi_open: bool = False,
    none: str | None = None,
) -> None:
    """Check `obj.name` is a number (an int when `integer`) within the bounds; `none` = what None means
    (None is allowed only when given)."""
    value = getattr(obj, name)
    if value is None and none is not None:
        return
    if lo is not None and hi is not None:
        bounds = f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    elif lo is not None:
        bounds = f"{'>' if lo_open else '>='} {lo:g}"
    else:
        bounds = ""
    what = f"must be {'an integer' if integer else 'a number'} {bounds}".rstrip()
    if none is not None:
        what += f", or None ({none})"
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or math.isnan(value):
        _fail(obj, name, what)
    if lo is not None and not (value > lo if lo_open else value >= lo):
        _fail(obj, name, what)
    if hi is not None and not (value < hi if hi_open else value <= hi):
        _fail(obj, name, what)


def _training(obj: TeacherConfig | StudentConfig) -> None:
    """The fields TeacherConfig and StudentConfig share."""
    _text(obj, "source")
    _number(obj, "epochs", 0, lo_open=True)
    steps = obj.max_steps
    if isinstance(steps, bool) or not isinstance(steps, int) or not (steps == -1 or steps >= 1):
        _fail(obj, "max_steps", "must be -1 (train for `epochs`) or an integer >= 1")
    for name in ("batch_size", "grad_accum", "lora_r", "save_steps"):
        _number(obj, name, 1, integer=True)
    _number(obj, "learning_rate", 0, lo_open=True)
    _number(obj, "lora_alpha", 0, lo_open=True)
    _strings(obj, "train_tokens")


@dataclass(frozen=True)
class DataConfig:
    max_section_tokens: int = 384  # token budget per section (student tokenizer)
    min_section_tokens: int = 8  # trailing fragments below this merge into the previous part
    max_file_bytes: int = 2_000_000
    # the cleaned section text is cut to this many tokens inside the prompt (only when longer): at or above
    # max_section_tokens, every whole section fits; the report shows the share cut per set
    max_prompt_tokens: int = 384
    max_summary_tokens: int = 64
    # val = whole raw/ documents, lowest hash rank first, until this many labelled sections (core/splits.py)
    val_min_examples: int = 40
    val_max_doc_fraction: float = 0.25  # ... but never more than this share of the pool's documents
    # held-out sections of the training documents (hash of doc id + heading path decides)
    test_seen_fraction: float = 0.12
    max_train: int | None = None  # cap on the train split (None = all); demo trains on a subset
    label_strictness: str = "fail"  # LABEL_STRICTNESS

    def __post_init__(self) -> None:
        for name in ("max_section_tokens", "max_file_bytes", "max_prompt_tokens", "max_summary_tokens"):
            _number(self, name, 1, integer=True)
        _number(self, "min_section_tokens", 0, integer=True)
        if self.min_section_tokens >= self.max_section_tokens:
            _fail(self, "min_section_tokens", f"must be < max_section_tokens={self.max_section_tokens}")
        _number(self, "val_min_examples", 1, integer=True)
        _number(self, "val_max_doc_fraction", 0, 1, lo_open=True, hi_open=True)
        _number(self, "test_seen_fraction", 0, 1, hi_open=True)
        _number(self, "max_train", 1, integer=True, none="all")
        _choice(self, "label_strictness", LABEL_STRICTNESS)


@dataclass(frozen=True)
class TeacherConfig:
    source: str = "tiny:teacher"  # "tiny:teacher" | "gguf:gemma3-270m" | hub id | local folder
    epochs: float = 3.0
    max_steps: int = -1  # -1 = train for `epochs`
    batch_size: int = 2
    grad_accum: int = 1
    learning_rate: float = 2e-4
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = ALL_PROJECTIONS
    save_steps: int = 50
    load_in_4bit: bool = False
    # embedding rows trained besides the adapter (peft `trainable_token_indices`); README 'Why each setting'
    train_tokens: tuple[str, ...] = (END_OF_TURN,)

    def __post_init__(self) -> None:
        _training(self)
        _number(self, "lora_dropout", 0, 1, hi_open=True)
        _strings(self, "target_modules", non_empty=True)
        _flag(self, "load_in_4bit")


@dataclass(frozen=True)
class CacheConfig:
    mode: str = "topk"  # CACHE_MODES
    k: int = 64  # ids kept per position in "topk" mode
    n_samples: int = 64  # draws per position in "sampled" mode
    batch_size: int = 4
    rows_per_group: int = 256

    def __post_init__(self) -> None:
        _choice(self, "mode", CACHE_MODES)
        # the setting the mode uses must be >= 1; the other one is ignored but not negative
        _number(self, "k", 1 if self.mode == "topk" else 0, integer=True)
        _number(self, "n_samples", 1 if self.mode == "sampled" else 0, integer=True)
        _number(self, "batch_size", 1, integer=True)
        _number(self, "rows_per_group", 1, integer=True)


@dataclass(frozen=True)
class StudentConfig:
    source: str = "tiny:student"  # "tiny:student" | "prune:<layers>" | hub id | local folder
    train_mode: str = "full"  # TRAIN_MODES
    freeze_embeddings: bool = True
    # embedding rows that train even when the embedding is frozen (see TeacherConfig.train_tokens)
    train_tokens: tuple[str, ...] = (END_OF_TURN,)
    epochs: float = 3.0
    max_steps: int = -1  # -1 = train for `epochs`
    batch_size: int = 2
    grad_accum: int = 1
    learning_rate: float = 2e-4
    alpha: float = 0.5  # weight of the KD term; (1 - alpha) weights CE; see README 'Why each setting'
    temperature: float = 1.0
    divergence: str = "forward_kl"  # DIVERGENCES
    lora_r: int = 16
    lora_alpha: int = 32
    gradient_checkpointing: bool = False
    save_steps: int = 50
    # model selection: greedy val ROUGE-Lsum after each epoch, keep the best epoch's weights
    select_on_val_rouge: bool = True
    early_stopping_patience: int = 1  # epochs without improvement before stopping (0 = never)
    # seq-KD: teacher summaries of this many unlabelled sections (None = all, 0 = off); README 'Why each setting'
    seqkd_max_examples: int | None = 0
    # vocabulary trimming (core/vocab.py): the student keeps this many token rows, the merge closure of
    # its training text padded by merge rank (None = the full vocabulary); README 'Why each setting'
    vocab_size: int | None = None

    def __post_init__(self) -> None:
        _training(self)
        _choice(self, "train_mode", TRAIN_MODES)
        _choice(self, "divergence", DIVERGENCES)
        _number(self, "alpha", 0, 1)
        _number(self, "temperature", 0, lo_open=True)
        _number(self, "early_stopping_patience", 0, integer=True)
        _number(self, "seqkd_max_examples", 0, integer=True, none="all")
        _number(self, "vocab_size", 260, integer=True, none="the full vocabulary")
        for name in ("freeze_embeddings", "gradient_checkpointing", "select_on_val_rouge"):
            _flag(self, name)


def _gate_models(obj: object, name: str) -> None:
    """`name` is a tuple of EVAL_MODELS that holds the two models the gates compare on val."""
    _strings(obj, name)
    for m in getattr(obj, name):
        if m not in EVAL_MODELS:
            _fail(obj, name, f"{m!r} is not one of {EVAL_MODELS}")
    if not {"student", "baseline"} <= set(getattr(obj, name)):
        _fail(obj, name, "must hold 'student' and 'baseline' (the gates compare them)")


@dataclass(frozen=True)
class EvalConfig:
    max_new_tokens: int = 48
    batch_size: int = 8
    do_sample: bool = False
    bertscore_model: str = "teacher_base"  # "teacher_base" (hidden states of the base) or a local folder
    bertscore_layer: int | None = None  # None = middle layer of the model
    bootstrap_samples: int = 2000  # document-clustered bootstrap resamples (CIs)
    permutation_resamples: int = 9999  # paired sign-flip test (exact when 2**n is smaller)
    seed: int = 0
    # examples scored per TEST set under SUMM_EVAL_SCOPE=sample (the first n by split key: a fixed
    # sample, the same for every model); None = all. val is always scored in full (the gates use it).
    test_sample: int | None = None
    # the models generated under SUMM_EVAL_SCOPE=sample (all of them under full)
    sample_models: tuple[str, ...] = ("teacher", "student", "baseline", "student_base")
    # ... and of those, the ones that also generate val under SUMM_EVAL_SCOPE=sample (the gates need the
    # student and the baseline; the others' val rows come with `make eval-full`)
    sample_val_models: tuple[str, ...] = ("teacher", "student", "baseline", "student_base")
    # the untuned bases' val loss (the report's reference rows): one val pass in each training asset
    untuned_val_loss: bool = True
    baseline_gate: str = "not_worse"  # BASELINE_GATES, at confidence 1 - gate_alpha
    gate_alpha: float = 0.05
    # never regress: a new student may replace the promoted one only if the one-sided (1 - gate_alpha)
    # lower bound of (new - promoted) val ROUGE-Lsum is above -regress_margin
    regress_margin: float = 0.03
    max_empty_share: float = 0.2  # empty student outputs on val, at most
    speed_batch: int = 8  # forced-length decode speed: rows per batch ...
    speed_tokens: int = 16  # ... and tokens forced per row
    # decoding (every stage that generates; recorded in each model's generation_config.json): an n-gram
    # ban on the generated tokens (0 = off; the prompt's n-grams stay allowed), transformers'
    # repetition_penalty (1.0 = off) and the one-sentence cut; chosen on val
    # (benchmarks/tune_decoding.py, README 'Why each setting')
    no_repeat_ngram_size: int = 4
    repetition_penalty: float = 1.0
    one_sentence: bool = True
    max_degenerate_share: float = 0.1  # degenerate student outputs on val (final), at most

    def __post_init__(self) -> None:
        for name in (
            "max_new_tokens",
            "batch_size",
            "bootstrap_samples",
            "permutation_resamples",
            "speed_batch",
            "speed_tokens",
        ):
            _number(self, name, 1, integer=True)
        _flag(self, "do_sample")
        _text(self, "bertscore_model")
        _number(self, "bertscore_layer", 1, integer=True, none="the middle layer")
        _number(self, "seed", 0, integer=True)
        _number(self, "test_sample", 1, integer=True, none="all")
        for name in ("sample_models", "sample_val_models"):
            _gate_models(self, name)
        _flag(self, "untuned_val_loss")
        _choice(self, "baseline_gate", BASELINE_GATES)
        _number(self, "gate_alpha", 0, 1, lo_open=True, hi_open=True)
        _number(self, "regress_margin", 0)
        _number(self, "max_empty_share", 0, 1)
        _number(self, "max_degenerate_share", 0, 1)
        _number(self, "no_repeat_ngram_size", 0, integer=True)
        _number(self, "repetition_penalty", 0, lo_open=True)
        _flag(self, "one_sentence")


_SECTIONS = {
    "data": DataConfig,
    "teacher": TeacherConfig,
    "cache": CacheConfig,
    "student": StudentConfig,
    "eval": EvalConfig,
}


@dataclass(frozen=True)
class Profile:
    name: str
    device: str = "cpu"  # DEVICES
    dtype: str = "float32"  # DTYPES
    threads: int | None = None  # torch threads on CPU; None = all cores
    max_memory: str | None = None  # cap per GPU for device_map="auto" (e.g. "20GiB"); None = no cap
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        _text(self, "name")
        _choice(self, "device", DEVICES)
        _choice(self, "dtype", DTYPES)
        _number(self, "threads", 1, integer=True, none="all cores")
        if self.max_memory is not None and not (
            isinstance(self.max_memory, str) and _MEMORY.match(self.max_memory.strip())
        ):
            _fail(self, "max_memory", "write a size like '20GiB' or '512MiB', or None (no cap)")
        _number(self, "seed", 0, integer=True)
        for name, cls in _SECTIONS.items():
            if not isinstance(getattr(self, name), cls):
                _fail(self, name, f"must be a {cls.__name__}")
        if self.cache.mode == "sampled" and self.student.divergence != "forward_kl":
            raise ProfileError(
                f"Profile {self.name!r}: cache.mode='sampled' with student.divergence="
                f"{self.student.divergence!r}: sampled targets are unbiased only for forward KL (the loss is "
                "linear in the target there); use cache.mode='topk' or divergence='forward_kl'"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


TINY = Profile(
    name="tiny",
    threads=1,
    # the test corpora hold 6 training documents: two of them make val
    data=DataConfig(
        max_section_tokens=1024, max_prompt_tokens=96, max_summary_tokens=32, val_max_doc_fraction=0.34
    ),
    teacher=TeacherConfig(
        source="tiny:teacher",
        epochs=2,
        batch_size=4,
        learning_rate=3e-3,
        lora_r=8,
        lora_alpha=16,
        save_steps=10,  # a checkpoint early enough for the kill-and-resume tests
        train_tokens=(),  # off for random-weight models; see README 'Why each setting'
    ),
    cache=CacheConfig(mode="topk", k=16, batch_size=8),
    student=StudentConfig(
        source="tiny:student",
        epochs=2,
        batch_size=4,
        learning_rate=3e-3,
        temperature=1.0,
        seqkd_max_examples=None,  # tests exercise the seq-KD path
        vocab_size=2000,  # tests exercise the trimmed path (the closure wins when larger)
        train_tokens=(),  # as for the teacher
    ),
    eval=EvalConfig(
        max_new_tokens=16,
        batch_size=16,
        bootstrap_samples=200,
        permutation_resamples=999,
        bertscore_layer=1,
        speed_batch=4,
        speed_tokens=4,
        # random-weight models: with a trimmed vocabulary their first guess is end-of-turn more often
        # (53 % of val empty in a test run); the rule itself is tested in test_gates.py
        max_empty_share=0.9,
        max_degenerate_share=1.0,  # random-weight models: their text is noise (test_gates tests the rule)
        baseline_gate="report_only",  # random-weight models: student vs baseline is noise (test_gates tests the rules)
    ),
)

DEMO = Profile(
    name="demo",
    threads=2,
    data=DataConfig(
        max_section_tokens=384,
        max_prompt_tokens=384,  # whole sections (README 'Why each setting')
        max_summary_tokens=40,
        max_train=64,  # the `make demo` budget (README 'Why each setting')
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
        source="prune:0,1,2,3,4,5,10,11,12,13,14,15,16,17",  # layers 6-9 dropped; see README 'Why each setting'
        epochs=1,
        batch_size=4,
        learning_rate=1e-4,
        alpha=0.25,  # re-swept on val for the trimmed student; see README 'Why each setting'
        temperature=1.0,
        save_steps=12,
        vocab_size=16384,  # depth x vocabulary swept on val (benchmarks/small_student_sweep.py); README
    ),
    # the `make demo` budget (README 'Why each setting'): batch 32, 8 examples per test set, the teacher on
    # val, the untuned base and the untuned val losses only in `make eval-full` (which scores every model
    # on every example; the untuned val losses come from a training run with untuned_val_loss=True)
    eval=EvalConfig(
        max_new_tokens=40,
        batch_size=32,
        test_sample=8,
        sample_models=("teacher", "student", "baseline"),
        sample_val_models=("student", "baseline"),
        untuned_val_loss=False,
    ),
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
    name = name or env.get(env.PROFILE) or DEFAULT_PROFILE
    if name not in PROFILES:
        raise ProfileError(
            f"unknown profile {name!r} (from ${PROFILE_ENV}); choose one of {sorted(PROFILES)}"
        )
    profile = PROFILES[name]
    teacher_src = env.get(env.TEACHER_SOURCE)
    student_src = env.get(env.STUDENT_SOURCE)
    if teacher_src:
        profile = replace(profile, teacher=replace(profile.teacher, source=teacher_src))
    if student_src:
        profile = replace(profile, student=replace(profile.student, source=student_src))
    scope = env.get(env.EVAL_SCOPE)
    if scope not in EVAL_SCOPES:
        raise ProfileError(f"${env.EVAL_SCOPE}={scope!r}: choose one of {EVAL_SCOPES}")
    if scope == "full":
        profile = replace(profile, eval=replace(profile.eval, test_sample=None))
    return profile
