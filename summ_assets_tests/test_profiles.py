"""Profiles validate themselves: every shipped one constructs, bad choices and ranges raise ProfileError."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from summ_assets.core import profiles as P
from summ_assets.core.profiles import (
    BASELINE_GATES,
    CACHE_MODES,
    DEVICES,
    DIVERGENCES,
    DTYPES,
    LABEL_STRICTNESS,
    PROFILES,
    TRAIN_MODES,
    CacheConfig,
    DataConfig,
    EvalConfig,
    Profile,
    ProfileError,
    StudentConfig,
    TeacherConfig,
)

SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "teacher": TeacherConfig,
    "cache": CacheConfig,
    "student": StudentConfig,
    "eval": EvalConfig,
}


def _make(cls: type, **kw: Any) -> Any:
    return cls(**{"name": "t", **kw}) if cls is Profile else cls(**kw)


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_shipped_profile_constructs_and_round_trips(name: str) -> None:
    p = PROFILES[name]
    assert p.name == name
    assert isinstance(p, Profile)
    # rebuilding from its own fields (what replace() and profile_from_dict do) gives the same profile
    rebuilt = Profile(
        **{f.name: getattr(p, f.name) for f in dataclasses.fields(Profile) if f.name not in SECTIONS},
        **{s: cls(**dataclasses.asdict(getattr(p, s))) for s, cls in SECTIONS.items()},
    )
    assert rebuilt == p
    assert P.get_profile(name).name == name


def test_shipped_values_are_unchanged() -> None:
    demo, tiny, gemma2 = PROFILES["demo"], PROFILES["tiny"], PROFILES["gemma2"]
    assert sorted(PROFILES) == ["demo", "gemma2", "tiny"]
    assert demo.student.alpha == 0.25 and demo.student.source.startswith("prune:0,1,2,3,4,5,10,")
    assert demo.student.vocab_size == 16384 and gemma2.student.vocab_size is None
    assert demo.student.seqkd_max_examples == 0 and tiny.student.seqkd_max_examples is None
    assert tiny.teacher.train_tokens == () and demo.teacher.train_tokens == ("<end_of_turn>",)
    assert (gemma2.device, gemma2.dtype, gemma2.cache.k) == ("cuda", "bfloat16", 64)


def test_defaults_construct() -> None:
    for cls in (*SECTIONS.values(), Profile):
        _make(cls)


CHOICES = [
    (DataConfig, "label_strictness", LABEL_STRICTNESS),
    (CacheConfig, "mode", CACHE_MODES),
    (StudentConfig, "train_mode", TRAIN_MODES),
    (StudentConfig, "divergence", DIVERGENCES),
    (EvalConfig, "baseline_gate", BASELINE_GATES),
    (Profile, "device", DEVICES),
    (Profile, "dtype", DTYPES),
]


@pytest.mark.parametrize(
    ("cls", "fname", "allowed"), CHOICES, ids=[f"{c.__name__}.{f}" for c, f, _ in CHOICES]
)
def test_choice_fields_reject_unknown_values(cls: type, fname: str, allowed: tuple[str, ...]) -> None:
    for good in allowed:
        assert getattr(_make(cls, **{fname: good}), fname) == good
    with pytest.raises(ProfileError) as err:
        _make(cls, **{fname: "bogus"})
    msg = str(err.value)
    assert msg.startswith(f"{cls.__name__}.{fname}='bogus'")
    assert str(allowed) in msg
    assert isinstance(err.value, ValueError)


def test_message_format_matches_the_documented_one() -> None:
    with pytest.raises(ProfileError) as err:
        StudentConfig(divergence="fwd")
    assert (
        str(err.value) == "StudentConfig.divergence='fwd': choose one of ('forward_kl', 'reverse_kl', 'jsd')"
    )


def test_kd_module_agrees_on_divergences() -> None:
    kd = pytest.importorskip("summ_assets.core.kd")
    assert tuple(kd.DIVERGENCES) == DIVERGENCES


BAD_VALUES = [
    (StudentConfig, "alpha", 1.5),
    (StudentConfig, "alpha", -0.1),
    (StudentConfig, "temperature", 0.0),
    (StudentConfig, "learning_rate", 0.0),
    (StudentConfig, "epochs", 0),
    (StudentConfig, "max_steps", 0),
    (StudentConfig, "batch_size", 0),
    (StudentConfig, "early_stopping_patience", -1),
    (StudentConfig, "seqkd_max_examples", -1),
    (StudentConfig, "seqkd_max_examples", "1"),
    (StudentConfig, "freeze_embeddings", "false"),
    (StudentConfig, "source", ""),
    (TeacherConfig, "lora_dropout", 1.0),
    (TeacherConfig, "lora_r", 0),
    (TeacherConfig, "grad_accum", 0),
    (TeacherConfig, "save_steps", 0),
    (TeacherConfig, "target_modules", ()),
    (TeacherConfig, "train_tokens", ["<end_of_turn>"]),
    (DataConfig, "val_min_examples", 0),
    (DataConfig, "val_max_doc_fraction", 1.0),
    (DataConfig, "test_seen_fraction", 1.0),
    (DataConfig, "max_section_tokens", 0),
    (DataConfig, "min_section_tokens", -1),
    (DataConfig, "max_train", 0),
    (DataConfig, "max_train", 2.5),
    (CacheConfig, "k", 0),
    (CacheConfig, "batch_size", 0),
    (CacheConfig, "rows_per_group", 0),
    (EvalConfig, "max_empty_share", 1.5),
    (EvalConfig, "regress_margin", -0.01),
    (EvalConfig, "gate_alpha", 1.0),
    (EvalConfig, "permutation_resamples", 0),
    (EvalConfig, "bootstrap_samples", 0),
    (EvalConfig, "bertscore_layer", 0),
    (EvalConfig, "test_sample", 0),
    (EvalConfig, "sample_models", ("teacher", "student")),
    (EvalConfig, "sample_models", ("student", "baseline", "oracle")),
    (EvalConfig, "sample_val_models", ("teacher", "student")),
    (EvalConfig, "sample_val_models", ("student", "baseline", "oracle")),
    (EvalConfig, "untuned_val_loss", "no"),
    (EvalConfig, "seed", -1),
    (Profile, "threads", 0),
    (Profile, "max_memory", "20 gigs"),
    (Profile, "seed", -1),
    (Profile, "name", ""),
    (Profile, "student", {"alpha": 0.5}),
]


@pytest.mark.parametrize(
    ("cls", "fname", "value"), BAD_VALUES, ids=[f"{c.__name__}.{f}={v!r}" for c, f, v in BAD_VALUES]
)
def test_range_and_type_checks(cls: type, fname: str, value: Any) -> None:
    with pytest.raises(ProfileError, match=re.escape(f"{cls.__name__}.{fname}={value!r}: ")):
        _make(cls, **{fname: value})


def test_edge_values_are_accepted() -> None:
    StudentConfig(alpha=0.0)
    StudentConfig(alpha=1.0, max_steps=5, seqkd_max_examples=None, early_stopping_patience=0)
    DataConfig(val_min_examples=1, test_seen_fraction=0.0, max_train=None)
    CacheConfig(mode="sampled", k=0, n_samples=16)
    EvalConfig(max_empty_share=1.0, regress_margin=0.0, bertscore_layer=1, test_sample=None)
    Profile(name="x", threads=None, max_memory="20GiB", device="auto", dtype="float16")


def test_cache_mode_needs_its_own_size() -> None:
    with pytest.raises(ProfileError, match=r"CacheConfig\.n_samples=0: "):
        CacheConfig(mode="sampled", n_samples=0)
    with pytest.raises(ProfileError, match=r"CacheConfig\.k=-1: "):
        CacheConfig(mode="sampled", k=-1)


def test_cross_field_checks() -> None:
    with pytest.raises(
        ProfileError, match=r"DataConfig\.min_section_tokens=64: must be < max_section_tokens"
    ):
        DataConfig(max_section_tokens=64, min_section_tokens=64)


def test_replace_goes_through_validation() -> None:
    p = PROFILES["demo"]
    with pytest.raises(ProfileError, match=r"StudentConfig\.divergence='bogus': choose one of"):
        dataclasses.replace(p.student, divergence="bogus")
    with pytest.raises(ProfileError, match=r"Profile\.device='tpu'"):
        dataclasses.replace(p, device="tpu")
    assert dataclasses.replace(p.student, divergence="jsd").divergence == "jsd"


def test_unknown_profile_name() -> None:
    with pytest.raises(ProfileError, match="unknown profile 'nope'"):
        P.get_profile("nope")


def test_profile_from_dict_validates() -> None:
    base = pytest.importorskip("summ_assets.stages.base")
    for p in PROFILES.values():
        assert base.profile_from_dict(base.profile_to_dict(p)) == p
    data = base.profile_to_dict(PROFILES["tiny"])
    data["cache"]["mode"] = "full"
    with pytest.raises(ProfileError, match=r"CacheConfig\.mode='full': choose one of \('topk', 'sampled'\)"):
        base.profile_from_dict(data)


def test_eval_scope_full_scores_every_test_example(monkeypatch: pytest.MonkeyPatch) -> None:
    from summ_assets.core.profiles import get_profile

    monkeypatch.setenv("SUMM_EVAL_SCOPE", "full")
    assert get_profile("demo").eval.test_sample is None
    monkeypatch.setenv("SUMM_EVAL_SCOPE", "sample")
    assert get_profile("demo").eval.test_sample == 8
    monkeypatch.setenv("SUMM_EVAL_SCOPE", "everything")
    with pytest.raises(ProfileError, match=r"SUMM_EVAL_SCOPE='everything': choose one of"):
        get_profile("demo")
