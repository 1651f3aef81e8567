"""Profiles: one named set of sizes, model sources and hyperparameters, read from a YAML file.

A profile is data, not code branches: every stage reads the fields it declares (`summ_assets.stages.specs`)
and the graph is the same for `tiny` (tests), `demo` (offline CPU default) and `gemma2` (GPU production).
The shipped profiles are ``profiles/<name>.yaml`` in the repository; ``$SUMM_PROFILE`` names one of them
or a path to a user's own YAML file, which may start from a shipped profile (``base: gemma2``) and
override a few fields. The sections below are pydantic dataclasses in strict mode: an unknown field, a
wrong type (YAML reads ``5e-4`` as a string: write ``5.0e-4``) or a value out of range raises
`ProfileError` naming the file, the field, the value and what is allowed. Each field's one-line
meaning is its ``description`` (the YAML files carry it as a comment; `summ-assets config show` prints
it). Why the shipped values are what they are: docs/settings.md.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError, model_validator
from pydantic.dataclasses import dataclass

from summ_assets.core import env
from summ_assets.core.prompts import END_OF_TURN

PROFILE_ENV = env.PROFILE
DEFAULT_PROFILE = "demo"
PROFILE_DIR = Path(__file__).resolve().parents[2] / "profiles"
SHIPPED = ("tiny", "demo", "gemma2")

ALL_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

# fixed value sets of the choice fields (the Literal types below are built from them)
Device = Literal["cpu", "cuda", "auto"]  # "auto" = cuda when usable, else cpu
Dtype = Literal["float32", "bfloat16", "float16"]
LabelStrictness = Literal["fail", "warn"]
CacheMode = Literal["topk", "sampled"]
TrainMode = Literal["full", "lora"]
Divergence = Literal["forward_kl", "reverse_kl", "jsd"]
BaselineGate = Literal["not_worse", "better", "report_only"]
EvalModel = Literal["teacher", "student", "baseline", "student_base"]
DEVICES: tuple[str, ...] = get_args(Device)
DTYPES: tuple[str, ...] = get_args(Dtype)
LABEL_STRICTNESS: tuple[str, ...] = get_args(LabelStrictness)
CACHE_MODES: tuple[str, ...] = get_args(CacheMode)
TRAIN_MODES: tuple[str, ...] = get_args(TrainMode)
DIVERGENCES: tuple[str, ...] = get_args(Divergence)
BASELINE_GATES: tuple[str, ...] = get_args(BaselineGate)
EVAL_MODELS: tuple[str, ...] = get_args(EvalModel)
MEMORY_PATTERN = r"^\d+(\.\d+)?\s*(GiB|MiB|GB|MB)$"  # a size like "20GiB"

Text = Annotated[str, StringConstraints(pattern=r"\S")]
Memory = Annotated[str, StringConstraints(pattern=MEMORY_PATTERN)]
_STRICT = ConfigDict(strict=True, extra="forbid", validate_assignment=True)


class ProfileError(ValueError):
    """A profile (file, field or environment) holds a value its readers cannot use."""


def _steps(value: int) -> int:
    if value != -1 and value < 1:
        raise ValueError(f"max_steps={value} must be -1 (train for `epochs`) or an integer >= 1")
    return value


@dataclass(frozen=True, config=_STRICT)
class DataConfig:
    max_section_tokens: int = Field(384, ge=1, description="token budget per section (student tokenizer)")
    min_section_tokens: int = Field(
        8, ge=0, description="trailing fragments below this many tokens merge into the previous part"
    )
    max_file_bytes: int = Field(2_000_000, ge=1, description="larger input files are refused")
    max_prompt_tokens: int = Field(
        384, ge=1, description="the cleaned section text is cut to this many tokens inside the prompt"
    )
    max_summary_tokens: int = Field(64, ge=1, description="reference summaries are cut to this many tokens")
    val_min_examples: int = Field(
        40,
        ge=1,
        description="val = whole raw/ documents, lowest hash rank first, until this many labelled sections",
    )
    val_min_documents: int = Field(
        1,
        ge=1,
        description="... and until it holds at least this many documents (power comes from documents)",
    )
    val_max_sections_per_document: int | None = Field(
        None,
        ge=1,
        description="labelled sections one val document gives val, lowest hash first (null = all; the rest: val_spare)",
    )
    val_max_doc_fraction: float = Field(
        0.25, gt=0, lt=1, description="... but never more than this share of the labelled pool's documents"
    )
    test_seen_fraction: float = Field(
        0.12, ge=0, lt=1, description="held-out sections of the training documents (test_seen)"
    )
    max_train: int | None = Field(None, ge=1, description="cap on the train split (null = all)")
    pool_documents: int | None = Field(
        None,
        ge=0,
        description="data/pool/ documents (unlabelled real pages) ingested, first by stable rank (null = all)",
    )
    label_strictness: LabelStrictness = Field(
        "fail", description="a bad label line fails the run (fail) or is skipped with a warning (warn)"
    )

    @model_validator(mode="after")
    def _min_below_max(self) -> DataConfig:
        if self.min_section_tokens >= self.max_section_tokens:
            raise ValueError(
                f"min_section_tokens={self.min_section_tokens} must be < max_section_tokens={self.max_section_tokens}"
            )
        return self


@dataclass(frozen=True, config=_STRICT)
class TeacherConfig:
    source: Text = Field(
        "tiny:teacher", description='"tiny:teacher" | "gguf:gemma3-270m" | a hub id | a local folder'
    )
    epochs: float = Field(3.0, gt=0, description="training epochs (when max_steps is -1)")
    max_steps: int = Field(-1, description="optimizer steps; -1 = train for `epochs`")
    batch_size: int = Field(2, ge=1, description="examples per device step")
    grad_accum: int = Field(1, ge=1, description="gradient accumulation steps")
    learning_rate: float = Field(2.0e-4, gt=0, description="peak learning rate")
    lora_r: int = Field(16, ge=1, description="LoRA rank")
    lora_alpha: int = Field(32, gt=0, description="LoRA scaling numerator (scale = lora_alpha / lora_r)")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the LoRA branch")
    target_modules: tuple[Text, ...] = Field(
        ALL_PROJECTIONS, min_length=1, description="projections that get a LoRA adapter"
    )
    save_steps: int = Field(50, ge=1, description="checkpoint every this many steps (resume after a kill)")
    load_in_4bit: bool = Field(False, description="QLoRA: load the base in 4 bits (GPU only)")
    train_tokens: tuple[Text, ...] = Field(
        (END_OF_TURN,),
        description="embedding rows trained besides the adapter (peft trainable_token_indices)",
    )

    @model_validator(mode="after")
    def _check_steps(self) -> TeacherConfig:
        _steps(self.max_steps)
        return self


@dataclass(frozen=True, config=_STRICT)
class CacheConfig:
    mode: CacheMode = Field(
        "topk", description="teacher log-probs kept per position: top-k + tail, or sampled"
    )
    k: int = Field(64, ge=0, description='ids kept per position in "topk" mode')
    n_samples: int = Field(64, ge=0, description='draws per position in "sampled" mode')
    batch_size: int = Field(4, ge=1, description="sequences per teacher forward pass")
    rows_per_group: int = Field(256, ge=1, description="Parquet row-group size of the cache")

    @model_validator(mode="after")
    def _mode_setting(self) -> CacheConfig:
        used = "k" if self.mode == "topk" else "n_samples"
        if getattr(self, used) < 1:
            raise ValueError(f"{used}={getattr(self, used)} must be >= 1 in mode {self.mode!r}")
        return self


@dataclass(frozen=True, config=_STRICT)
class StudentConfig:
    source: Text = Field(
        "tiny:student", description='"tiny:student" | "prune:<layers kept>" | a hub id | a local folder'
    )
    train_mode: TrainMode = Field("full", description="full fine-tuning or a LoRA adapter")
    freeze_embeddings: bool = Field(True, description="keep the embedding matrix frozen (full mode)")
    train_tokens: tuple[Text, ...] = Field(
        (END_OF_TURN,), description="embedding rows that train even when the embedding is frozen"
    )
    epochs: float = Field(3.0, gt=0, description="training epochs (when max_steps is -1)")
    max_steps: int = Field(-1, description="optimizer steps; -1 = train for `epochs`")
    batch_size: int = Field(2, ge=1, description="examples per device step")
    grad_accum: int = Field(1, ge=1, description="gradient accumulation steps")
    learning_rate: float = Field(2.0e-4, gt=0, description="peak learning rate")
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the KD term; (1 - alpha) weights CE")
    temperature: float = Field(1.0, gt=0, description="KD temperature (the logit cache is captured at it)")
    divergence: Divergence = Field("forward_kl", description="the KD divergence")
    lora_r: int = Field(16, ge=1, description="LoRA rank (train_mode lora)")
    lora_alpha: int = Field(32, gt=0, description="LoRA scaling numerator (train_mode lora)")
    gradient_checkpointing: bool = Field(False, description="trade compute for memory")
    save_steps: int = Field(50, ge=1, description="checkpoint every this many steps (resume after a kill)")
    select_on_val_rouge: bool = Field(
        True, description="greedy val ROUGE-Lsum after each epoch; keep the best epoch's weights"
    )
    early_stopping_patience: int = Field(
        1, ge=0, description="epochs without val improvement before stopping (0 = never)"
    )
    seqkd_max_examples: int | None = Field(
        0,
        ge=0,
        description="teacher summaries of this many unlabelled sections join training (null = all, 0 = off)",
    )
    vocab_size: int | None = Field(
        None, ge=260, description="token rows the trimmed student keeps (null = the full vocabulary)"
    )

    @model_validator(mode="after")
    def _check_steps(self) -> StudentConfig:
        _steps(self.max_steps)
        return self


def _gate_models(name: str, models: tuple[str, ...]) -> None:
    if not {"student", "baseline"} <= set(models):
        raise ValueError(f"{name}={list(models)} must hold 'student' and 'baseline' (the gates compare them)")


@dataclass(frozen=True, config=_STRICT)
class EvalConfig:
    max_new_tokens: int = Field(48, ge=1, description="summary tokens generated at most")
    batch_size: int = Field(8, ge=1, description="sections per generation batch")
    do_sample: bool = Field(False, description="sample instead of greedy decoding")
    bertscore_model: Text = Field(
        "teacher_base", description='"teacher_base" (hidden states of the base) or a local model folder'
    )
    bertscore_layer: int | None = Field(None, ge=1, description="BERTScore layer (null = the middle layer)")
    bootstrap_samples: int = Field(2000, ge=1, description="document-clustered bootstrap resamples (CIs)")
    permutation_resamples: int = Field(9999, ge=1, description="paired sign-flip test resamples")
    seed: int = Field(0, ge=0, description="seed of resampling and sampling")
    test_sample: int | None = Field(
        None, ge=1, description="examples scored per test set by the sampled evaluation_report (null = all)"
    )
    sample_models: tuple[EvalModel, ...] = Field(
        ("teacher", "student", "baseline", "student_base"),
        description="the models the sampled evaluation_report generates (evaluation_report_full: all)",
    )
    sample_val_models: tuple[EvalModel, ...] = Field(
        ("teacher", "student", "baseline", "student_base"),
        description="... and of those, the ones that also generate val for it",
    )
    untuned_val_loss: bool = Field(
        True, description="score the untuned bases' val loss (report reference rows)"
    )
    baseline_gate: BaselineGate = Field(
        "not_worse", description="student vs CE baseline on val: not_worse | better | report_only"
    )
    gate_alpha: float = Field(
        0.05, gt=0, lt=1, description="the gates' error level (confidence 1 - gate_alpha)"
    )
    regress_margin: float = Field(
        0.03, ge=0, description="a new student may trail the promoted one by at most this val ROUGE-Lsum"
    )
    max_empty_share: float = Field(0.2, ge=0, le=1, description="empty student outputs on val, at most")
    speed_batch: int = Field(8, ge=1, description="forced-length decode speed: rows per batch")
    speed_tokens: int = Field(16, ge=1, description="forced-length decode speed: tokens per row")
    no_repeat_ngram_size: int = Field(
        4,
        ge=0,
        description="ban repeated n-grams of the generated tokens (0 = off; the prompt's stay allowed)",
    )
    repetition_penalty: float = Field(1.0, gt=0, description="transformers' repetition_penalty (1.0 = off)")
    one_sentence: bool = Field(True, description="cut each summary after its first sentence")
    max_degenerate_share: float = Field(
        0.1, ge=0, le=1, description="degenerate student outputs on val (final), at most"
    )

    @model_validator(mode="after")
    def _gates_models(self) -> EvalConfig:
        _gate_models("sample_models", self.sample_models)
        _gate_models("sample_val_models", self.sample_val_models)
        return self


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "teacher": TeacherConfig,
    "cache": CacheConfig,
    "student": StudentConfig,
    "eval": EvalConfig,
}


@dataclass(frozen=True, config=_STRICT)
class Profile:
    name: Text = Field(description="the profile's name (logs, reports)")
    device: Device = Field("cpu", description="where heavy steps run: cpu | cuda | auto")
    dtype: Dtype = Field("float32", description="model weights' dtype")
    threads: int | None = Field(None, ge=1, description="torch threads on CPU (null = all cores)")
    max_memory: Memory | None = Field(
        None, description='cap per GPU for device_map="auto", e.g. "20GiB" (null = no cap)'
    )
    seed: int = Field(0, ge=0, description="seed of model building and training")
    data: DataConfig = Field(default_factory=DataConfig, description="sections, prompts and splits")
    teacher: TeacherConfig = Field(default_factory=TeacherConfig, description="the LoRA teacher")
    cache: CacheConfig = Field(default_factory=CacheConfig, description="the teacher log-prob cache")
    student: StudentConfig = Field(default_factory=StudentConfig, description="the students")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="generation, scoring and gates")

    @model_validator(mode="after")
    def _sampled_needs_forward_kl(self) -> Profile:
        if self.cache.mode == "sampled" and self.student.divergence != "forward_kl":
            raise ValueError(
                f"cache.mode='sampled' with student.divergence={self.student.divergence!r}: sampled targets "
                "are unbiased only for forward KL (the loss is linear in the target there); use "
                "cache.mode='topk' or divergence='forward_kl'"
            )
        return self


# --- YAML files ---------------------------------------------------------------------------------------


def describe(path: str) -> str:
    """The one-line meaning of dotted field `path` ("student.alpha")."""
    section, _, name = path.rpartition(".")
    cls = SECTIONS[section] if section else Profile
    return cls.__pydantic_fields__[name].description or ""


def field_paths() -> list[str]:
    """Every leaf field of a profile, dotted, in declaration order."""
    out: list[str] = []
    for f in dataclasses.fields(Profile):
        if f.name in SECTIONS:
            out += [f"{f.name}.{g.name}" for g in dataclasses.fields(SECTIONS[f.name])]
        else:
            out.append(f.name)
    return out


def profile_file(name_or_path: str) -> Path:
    """The YAML file of a shipped profile name, or a user's path."""
    if name_or_path in SHIPPED:
        return PROFILE_DIR / f"{name_or_path}.yaml"
    path = Path(name_or_path).expanduser()
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ProfileError(f"profile file {path} does not exist (from ${PROFILE_ENV} or --profile)")
        return path.resolve()
    raise ProfileError(
        f"unknown profile {name_or_path!r} (from ${PROFILE_ENV}); choose one of {list(SHIPPED)} "
        "or give the path to a YAML file"
    )


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read the profile ({exc})") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ProfileError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: a profile is a mapping of fields, found {type(data).__name__}")
    return data


def _layers(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[Path, dict[str, Any]]]:
    """`path`'s YAML and, first, those of its `base:` chain (each a (file, fields) pair)."""
    if path in seen:
        raise ProfileError(f"{path}: `base:` chain loops ({' -> '.join(str(p) for p in (*seen, path))})")
    data = _read_yaml(path)
    base = data.pop("base", None)
    if base is None:
        return [(path, data)]
    if not isinstance(base, str) or not base.strip():
        raise ProfileError(f"{path}: base={base!r}: name a shipped profile {list(SHIPPED)} or a YAML file")
    base_path = profile_file(base) if base in SHIPPED else (path.parent / base).resolve()
    if not base_path.is_file():
        raise ProfileError(f"{path}: base={base!r}: no such profile file ({base_path})")
    return [*_layers(base_path, (*seen, path)), (path, data)]


def _merge(layers: list[tuple[Path, dict[str, Any]]]) -> tuple[dict[str, Any], dict[str, str]]:
    """Fields of later layers win, section by section; origins: dotted field -> the file it came from."""
    merged: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for path, data in layers:
        for key, value in data.items():
            if key in SECTIONS and isinstance(value, dict):
                section = merged.setdefault(key, {})
                if not isinstance(section, dict):
                    section = merged[key] = {}
                for name, v in value.items():
                    section[name] = v
                    origins[f"{key}.{name}"] = str(path)
            else:
                merged[key] = value
                origins[key] = str(path)
    return merged, origins


def _explain(exc: ValidationError, origins: dict[str, str], fallback: str) -> ProfileError:
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if not isinstance(p, int)]
        path = ".".join(loc)
        where = origins.get(path) or (origins.get(loc[0]) if loc else None) or fallback
        msg = err["msg"].replace("Value error, ", "")
        if err["type"] in ("unexpected_keyword_argument", "extra_forbidden"):
            section, _, _name = path.rpartition(".")
            cls = SECTIONS.get(section, Profile) if section else Profile
            allowed = [f.name for f in dataclasses.fields(cls)] + ([] if section else ["base"])
            msg = f"unknown field; allowed here: {', '.join(allowed)}"
        value = err.get("input")
        if isinstance(value, str) and err["type"] in ("float_type", "int_type"):
            try:
                float(value)
                msg += f" (YAML reads {value} as a string: write it with a decimal point, e.g. 5.0e-4)"
            except ValueError:
                pass
        shown = "" if isinstance(value, dict) else f"={value!r}"
        lines.append(f"{where}: {path or '(profile)'}{shown}: {msg}")
    return ProfileError("\n".join(lines))


_ADAPTER = TypeAdapter(Profile)


def profile_from_data(
    data: dict[str, Any], origins: dict[str, str] | None = None, where: str = ""
) -> Profile:
    """Validate plain data (parsed YAML/JSON) as a Profile, strictly; errors name file and field."""
    try:
        return _ADAPTER.validate_json(json.dumps(data), strict=True)
    except ValidationError as exc:
        raise _explain(exc, origins or {}, where or "profile") from None


@functools.lru_cache(maxsize=32)
def _load(path: Path, mtime_ns: int) -> tuple[Profile, tuple[tuple[str, str], ...]]:
    layers = _layers(path)
    merged, origins = _merge(layers)
    profile = profile_from_data(merged, origins, str(path))
    return profile, tuple(origins.items())


def load_profile(name_or_path: str) -> tuple[Profile, dict[str, str]]:
    """A profile from its YAML file (a shipped name or a path), with each field's origin: the file it
    was set in, or "default"."""
    path = profile_file(name_or_path)
    if not path.is_file():
        raise ProfileError(f"profile file {path} does not exist")
    profile, pairs = _load(path, path.stat().st_mtime_ns)
    given = dict(pairs)
    return profile, {f: given.get(f, "default") for f in field_paths()}


def _replace(profile: Profile, path: str, value: Any) -> Profile:
    section, _, name = path.rpartition(".")
    if not section:
        return dataclasses.replace(profile, **{path: value})
    return dataclasses.replace(
        profile, **{section: dataclasses.replace(getattr(profile, section), **{name: value})}
    )


def effective_profile(name: str | None = None) -> tuple[Profile, dict[str, str]]:
    """The profile in force (`name`, else $SUMM_PROFILE, else `demo`) after the environment overrides,
    and where each field's value came from (a file, "default" or "environment ($VAR)")."""
    name = name or env.get(env.PROFILE) or DEFAULT_PROFILE
    profile, origins = load_profile(name)
    overrides: list[tuple[str, str, Any]] = []
    for var, path in ((env.TEACHER_SOURCE, "teacher.source"), (env.STUDENT_SOURCE, "student.source")):
        if value := env.get(var):
            overrides.append((var, path, value))
    for var, path, value in overrides:
        try:
            profile = _replace(profile, path, value)
        except ValidationError as exc:
            raise _explain(exc, {path: f"${var}"}, f"${var}") from None
        origins[path] = f"environment (${var})"
    return profile, origins


def get_profile(name: str | None = None) -> Profile:
    """The profile called `name` (a shipped name or a YAML path), or the one $SUMM_PROFILE names
    (default `demo`), with the environment overrides ($SUMM_TEACHER_SOURCE, $SUMM_STUDENT_SOURCE) applied."""
    return effective_profile(name)[0]


def shipped(name: str) -> Profile:
    """A shipped profile as its file says (no environment overrides)."""
    return load_profile(name)[0]


def __getattr__(name: str) -> Any:
    """`TINY`, `DEMO`, `GEMMA2` and `PROFILES`: the shipped profiles, read from their files on first use."""
    if name in ("TINY", "DEMO", "GEMMA2"):
        return shipped(name.lower())
    if name == "PROFILES":
        return {n: shipped(n) for n in SHIPPED}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- YAML out ------------------------------------------------------------------------------------------


def _scalar(value: Any) -> str:
    if isinstance(value, float):
        text = repr(value)
        if "e" in text and "." not in text.split("e")[0]:  # YAML 1.1 reads 5e-4 as a string
            mantissa, exp = text.split("e")
            text = f"{mantissa}.0e{exp}"
        return text
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def to_yaml(profile: Profile, origins: dict[str, str] | None = None, header: str = "") -> str:
    """`profile` as a YAML file: every field with its one-line meaning as a comment (and, with
    `origins`, where its value came from)."""
    lines = [f"# {h}" if h else "#" for h in header.splitlines()] if header else []
    for f in dataclasses.fields(Profile):
        value = getattr(profile, f.name)
        if f.name in SECTIONS:
            lines += ["", f"{f.name}:  # {describe(f.name)}"]
            for g in dataclasses.fields(SECTIONS[f.name]):
                path = f"{f.name}.{g.name}"
                note = describe(path) + (f"  [{origins[path]}]" if origins else "")
                lines.append(f"  {g.name}: {_scalar(getattr(value, g.name))}  # {note}")
        else:
            note = describe(f.name) + (f"  [{origins[f.name]}]" if origins else "")
            lines.append(f"{f.name}: {_scalar(value)}  # {note}")
    return "\n".join(lines) + "\n"
