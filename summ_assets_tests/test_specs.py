"""One spec per asset: the Dagster code version and the artifact key derive from the same declaration,
a declared field changes both, an undeclared one neither, and a stage cannot read an undeclared field."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import pytest

from summ_assets.core import profiles as P
from summ_assets.core import prompts
from summ_assets.core.spec import RUNTIME, AssetSpec, UndeclaredSettingError, all_fields, field_value
from summ_assets.stages.specs import SPECS

TINY = P.get_profile("tiny")
INPUTS = {"data": "some-dataset-version", "base": "some-base-version"}


def _definition_assets() -> dict[str, str | None]:
    from summ_assets.definitions import defs

    return {
        k.to_user_string(): spec.code_version
        for a in defs.assets
        for k, spec in getattr(a, "specs_by_key", {}).items()
    }


def _set(profile: P.Profile, path: str, value: Any) -> P.Profile:
    if "." not in path:
        return dataclasses.replace(profile, **{path: value})
    section, name = path.split(".")
    return dataclasses.replace(
        profile, **{section: dataclasses.replace(getattr(profile, section), **{name: value})}
    )


def _candidates(value: Any, hint: Any) -> list[Any]:
    """Other values of a field's type, most plausible first (the validators pick the valid ones)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) is typing.Literal:
        return [a for a in args if a != value]
    if value is None:
        return [1, 2, 300, 0.5, "x"]
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1, value - 1, value + 11, None]
    if isinstance(value, float):
        return [value * 0.5, value + 0.01, value * 2]
    if isinstance(value, str):
        return [value + "x", "teacher"]
    if isinstance(value, tuple):
        return [value[:-1], (*value, "student_base"), (*value, "x"), ("student", "baseline"), ("q_proj",)]
    raise AssertionError(f"no candidate for {value!r}")


def _changed(profile: P.Profile, path: str) -> P.Profile:
    section, _, name = path.rpartition(".")
    cls = type(getattr(profile, section)) if section else type(profile)
    hint = typing.get_type_hints(cls, include_extras=False)[name or path]
    current = field_value(profile, path)
    for v in _candidates(current, hint):
        if v == current:
            continue
        try:
            return _set(profile, path, v)
        except ValueError:
            continue
    raise AssertionError(f"no other valid value found for {path}")


def test_every_asset_has_a_spec_and_its_code_version_is_the_specs() -> None:
    assets = _definition_assets()
    assert set(assets) == set(SPECS), (
        "every asset of the Definitions has exactly one spec, and no spec is orphaned"
    )
    profile = P.get_profile()
    for name, cv in assets.items():
        assert cv == SPECS[name].code_version(profile), name


@pytest.mark.parametrize("name", sorted(SPECS))
def test_a_declared_field_changes_code_version_and_key_an_undeclared_one_neither(name: str) -> None:
    spec = SPECS[name]
    cv, key = spec.code_version(TINY), spec.key(TINY, INPUTS)
    for path in all_fields(TINY):
        if path in RUNTIME or path == "name":
            continue
        other = _changed(TINY, path)
        moved = (spec.code_version(other) != cv, spec.key(other, INPUTS) != key)
        if path in spec.declared:
            assert moved == (True, True), f"{name}: declared {path} must change code version and key"
        else:
            assert moved == (False, False), f"{name}: undeclared {path} must change neither"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_the_prompt_version_counts_exactly_for_prompt_building_assets(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = SPECS[name]
    cv, key = spec.code_version(TINY), spec.key(TINY, INPUTS)
    monkeypatch.setattr(prompts, "INSTRUCTION", "이 절을 한 문장으로 요약해줘: ")
    moved = (spec.code_version(TINY) != cv, spec.key(TINY, INPUTS) != key)
    assert moved == ((True, True) if spec.prompt else (False, False)), name


def test_decoding_fields_include_the_one_sentence_cut() -> None:
    for name in ("teacher_adapter", "student_model", "student_baseline", "student_generations"):
        assert "eval.one_sentence" in SPECS[name].declared
        assert "eval.no_repeat_ngram_size" in SPECS[name].declared


def test_a_view_answers_declared_fields_and_refuses_the_rest() -> None:
    spec = AssetSpec("probe", "probe-v1", ("student.alpha", "seed"))
    view = spec.view(TINY)
    assert view.student.alpha == TINY.student.alpha and view.seed == TINY.seed
    assert view.threads == TINY.threads  # runtime fields need no declaration
    with pytest.raises(UndeclaredSettingError, match=r"'probe' read the profile field 'student.temperature'"):
        _ = view.student.temperature
    with pytest.raises(UndeclaredSettingError):
        _ = view.dtype
    with pytest.raises(UndeclaredSettingError):
        view.with_values({"student.epochs": 3.0})
    assert view.with_values({"student.alpha": 0.0}).student.alpha == 0.0
    assert view.settings() == {"student.alpha": TINY.student.alpha, "seed": TINY.seed}
    with pytest.raises(AttributeError):
        view.seed = 3  # type: ignore[misc]


def test_the_same_spec_gives_the_same_key_for_the_same_inputs_and_another_for_others() -> None:
    spec = SPECS["student_baseline"]
    assert spec.key(TINY, INPUTS) == spec.key(TINY, dict(INPUTS))
    assert spec.key(TINY, INPUTS) != spec.key(TINY, {**INPUTS, "data": "another"})
