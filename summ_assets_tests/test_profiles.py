"""Profiles are YAML files validated by pydantic: the shipped ones equal the profiles they replaced, a
user file starts from a shipped one, and every bad file, field or value is a clear error."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from summ_assets.core import profiles as P
from summ_assets.core.profiles import (
    DIVERGENCES,
    PROFILES,
    CacheConfig,
    DataConfig,
    EvalConfig,
    Profile,
    ProfileError,
    StudentConfig,
    TeacherConfig,
)

FROZEN = Path(__file__).parent / "fixtures" / "profiles_before_yaml.json"
# deliberate changes since the move to YAML: {profile: {"section.field": value}}, each explained in
# docs/settings.md; anything else that differs from the frozen constants is an accident
CHANGED_SINCE_YAML: dict[str, dict[str, Any]] = {
    "demo": {
        "eval.max_degenerate_share": 0.15,
        "data.pool_documents": 0,
        "data.val_min_documents": 12,
        "data.val_max_sections_per_document": 4,
        "data.val_max_doc_fraction": 0.4,
        "data.test_seen_fraction": 0.15,
    },
    "tiny": {
        "data.pool_documents": 0,
        "data.val_min_documents": 1,
        "data.val_max_sections_per_document": None,
    },
    "gemma2": {
        "data.pool_documents": None,
        "data.val_min_documents": 12,
        "data.val_max_sections_per_document": None,
        "data.val_max_doc_fraction": 0.4,
        "data.test_seen_fraction": 0.15,
    },
}


@pytest.mark.parametrize("name", P.SHIPPED)
def test_each_shipped_yaml_equals_the_python_profile_it_replaced(name: str) -> None:
    """profiles_before_yaml.json: `asdict` of TINY / DEMO / GEMMA2 as Python constants, frozen before the
    move to YAML, plus the deliberate changes listed in CHANGED_SINCE_YAML."""
    before = json.loads(FROZEN.read_text())[name]
    for dotted, value in CHANGED_SINCE_YAML.get(name, {}).items():
        *path, leaf = dotted.split(".")
        node = before
        for part in path:
            node = node[part]
        node[leaf] = value
    now = json.loads(json.dumps(dataclasses.asdict(P.shipped(name))))
    assert now == before


@pytest.mark.parametrize("name", P.SHIPPED)
def test_every_shipped_file_carries_every_field_with_its_meaning(name: str) -> None:
    text = (P.PROFILE_DIR / f"{name}.yaml").read_text(encoding="utf-8")
    for path in P.field_paths():
        field = path.rpartition(".")[2]
        lines = [ln for ln in text.splitlines() if ln.strip().startswith(f"{field}:")]
        assert lines and all("  # " in ln for ln in lines), (
            f"{name}.yaml: {path} without its one-line meaning"
        )
        assert P.describe(path), path


def test_a_user_file_starts_from_a_shipped_profile_and_says_where_each_value_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = tmp_path / "mine.yaml"
    f.write_text(
        "base: gemma2\nname: my-gemma\nteacher:\n  source: /models/t\nstudent:\n  learning_rate: 1.0e-4\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("SUMM_PROFILE", str(f))
    monkeypatch.setenv("SUMM_STUDENT_SOURCE", "/models/s")
    prof, origins = P.effective_profile()
    gemma2 = P.shipped("gemma2")
    assert prof.name == "my-gemma" and prof.teacher.source == "/models/t"
    assert prof.student.learning_rate == 1.0e-4 and prof.student.source == "/models/s"
    assert prof.teacher.epochs == gemma2.teacher.epochs and prof.device == "cuda"
    assert origins["teacher.source"] == str(f.resolve())
    assert origins["teacher.epochs"] == str(P.PROFILE_DIR / "gemma2.yaml")
    assert origins["student.source"] == "environment ($SUMM_STUDENT_SOURCE)"


def test_fields_a_file_leaves_out_take_their_defaults(tmp_path: Path) -> None:
    f = tmp_path / "bare.yaml"
    f.write_text("name: bare\n", encoding="utf-8")
    prof, origins = P.load_profile(str(f))
    assert prof == Profile(name="bare")
    assert origins["student.alpha"] == "default" and origins["name"] == str(f.resolve())


def test_config_show_prints_every_field_and_its_origin(capsys: pytest.CaptureFixture[str]) -> None:
    from summ_assets.cli import main

    assert main(["config", "show", "--profile", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "effective profile 'tiny'" in out
    assert "  alpha: 0.5  # weight of the KD term" in out
    assert out.count("tiny.yaml]") == len(P.field_paths())


BAD_FILES = [
    ("student:\n  alfa: 0.5\n", "student.alfa=0.5: unknown field; allowed here: source, train_mode"),
    ("studnet:\n  alpha: 0.5\n", "studnet: unknown field"),
    (
        "student:\n  learning_rate: 5e-4\n",
        "student.learning_rate='5e-4': Input should be a valid number (YAML reads",
    ),
    ("student:\n  alpha: 1.5\n", "student.alpha=1.5: Input should be less than or equal to 1"),
    ("student:\n  batch_size: 2.5\n", "student.batch_size=2.5: Input should be a valid integer"),
    (
        "student:\n  divergence: fwd\n",
        "student.divergence='fwd': Input should be 'forward_kl', 'reverse_kl' or 'jsd'",
    ),
    ("eval:\n  sample_models: [teacher, student]\n", "must hold 'student' and 'baseline'"),
    ("data:\n  min_section_tokens: 400\n", "min_section_tokens=400 must be < max_section_tokens=384"),
    ("threads: 0\n", "threads=0: Input should be greater than or equal to 1"),
    ("base: nope\n", "base='nope': no such profile file"),
    ("- a\n- b\n", "a profile is a mapping of fields"),
    ("student: [\n", ":3: not valid YAML"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_FILES, ids=[e for _, e in BAD_FILES])
def test_a_bad_file_is_an_error_naming_file_field_and_value(tmp_path: Path, text: str, expected: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(("base: demo\n" if not text.startswith(("base", "-")) else "") + text, encoding="utf-8")
    with pytest.raises(ProfileError) as err:
        P.load_profile(str(f))
    msg = str(err.value)
    assert str(f.resolve()) in msg
    assert expected in msg


def test_a_missing_file_or_unknown_name_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"profile file .*missing\.yaml does not exist"):
        P.get_profile(str(tmp_path / "missing.yaml"))
    with pytest.raises(
        ProfileError, match=r"unknown profile 'nope'.*choose one of \['tiny', 'demo', 'gemma2'\]"
    ):
        P.get_profile("nope")


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
    (StudentConfig, "divergence", "fwd"),
    (TeacherConfig, "lora_dropout", 1.0),
    (TeacherConfig, "lora_r", 0),
    (TeacherConfig, "target_modules", ()),
    (TeacherConfig, "train_tokens", ["<end_of_turn>"]),
    (DataConfig, "val_max_doc_fraction", 1.0),
    (DataConfig, "test_seen_fraction", 1.0),
    (DataConfig, "max_train", 0),
    (DataConfig, "max_train", 2.5),
    (DataConfig, "label_strictness", "loose"),
    (CacheConfig, "k", 0),
    (CacheConfig, "mode", "full"),
    (EvalConfig, "max_empty_share", 1.5),
    (EvalConfig, "gate_alpha", 1.0),
    (EvalConfig, "bertscore_layer", 0),
    (EvalConfig, "sample_models", ("teacher", "student")),
    (EvalConfig, "sample_val_models", ("student", "baseline", "oracle")),
    (EvalConfig, "untuned_val_loss", "no"),
    (Profile, "threads", 0),
    (Profile, "max_memory", "20 gigs"),
    (Profile, "device", "tpu"),
    (Profile, "dtype", "int4"),
    (Profile, "name", ""),
]


@pytest.mark.parametrize(
    ("cls", "fname", "value"), BAD_VALUES, ids=[f"{c.__name__}.{f}={v!r}" for c, f, v in BAD_VALUES]
)
def test_python_construction_and_replace_are_validated_too(cls: type, fname: str, value: Any) -> None:
    kw: dict[str, Any] = {"name": "t"} if cls is Profile else {}
    with pytest.raises(ValueError, match=fname):
        cls(**{**kw, fname: value})
    good = cls(**kw)
    with pytest.raises(ValueError, match=fname):
        dataclasses.replace(good, **{fname: value})


def test_edge_values_are_accepted() -> None:
    StudentConfig(alpha=0.0)
    StudentConfig(alpha=1.0, max_steps=5, seqkd_max_examples=None, early_stopping_patience=0)
    DataConfig(val_min_examples=1, test_seen_fraction=0.0, max_train=None)
    CacheConfig(mode="sampled", k=0, n_samples=16)
    EvalConfig(max_empty_share=1.0, regress_margin=0.0, bertscore_layer=1, test_sample=None)
    Profile(name="x", threads=None, max_memory="20GiB", device="auto", dtype="float16")


def test_kd_module_agrees_on_divergences() -> None:
    from summ_assets.core import kd

    assert tuple(kd.DIVERGENCES) == DIVERGENCES


def test_profile_travels_to_a_remote_process_and_back() -> None:
    from summ_assets.stages import base

    for p in PROFILES.values():
        assert base.profile_from_dict(base.profile_to_dict(p)) == p
    data = base.profile_to_dict(PROFILES["tiny"])
    data["cache"]["mode"] = "full"
    with pytest.raises(base.StageError, match=r"cache.mode='full': Input should be 'topk' or 'sampled'"):
        base.profile_from_dict(data)
    data = base.profile_to_dict(PROFILES["tiny"])
    data["student"]["new_knob"] = 1
    with pytest.raises(base.StageError, match="another summ-assets version"):
        base.profile_from_dict(data)


def test_the_eval_scope_variable_is_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    """The full evaluation is its own asset (evaluation_report_full); no variable changes the profile."""
    monkeypatch.setenv("SUMM_EVAL_SCOPE", "full")
    assert P.get_profile("demo").eval.test_sample == 8


def test_shipped_values_that_docs_settings_explains() -> None:
    demo, tiny, gemma2 = PROFILES["demo"], PROFILES["tiny"], PROFILES["gemma2"]
    assert demo.student.alpha == 0.25 and demo.student.source.startswith("prune:0,1,2,3,4,5,10,")
    assert demo.student.vocab_size == 16384 and gemma2.student.vocab_size is None
    assert tiny.teacher.train_tokens == () and demo.teacher.train_tokens == ("<end_of_turn>",)
    assert (gemma2.device, gemma2.dtype, gemma2.cache.k) == ("cuda", "bfloat16", 64)
