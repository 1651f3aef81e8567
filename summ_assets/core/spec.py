"""One declaration per asset: what its result depends on.

An `AssetSpec` names the profile fields an asset reads (dotted: ``"student.alpha"``; fields, not whole
sections, so an unrelated change rebuilds nothing), whether it builds prompts (the prompt builder's
version then counts too), whether it decodes (the `DECODING` fields) and a code tag bumped by hand
when the body changes meaning. Both the Dagster ``code_version`` and the artifact cache key derive
from it (`AssetSpec.code_version`, `AssetSpec.key`), so the two cannot disagree.

A stage never sees the profile itself: it gets `AssetSpec.view(profile)`, a read-only view that
answers declared fields and raises `UndeclaredSettingError` for any other, so an undeclared read
fails the first run that makes it instead of silently reusing a stale artifact. With
``$SUMM_SPEC_READ_LOG`` set, every first read of a field by an asset appends one JSON line
``{"asset", "field"}`` to that file (the tests compare reads with declarations).
No dagster import here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

from summ_assets.core import env
from summ_assets.core.artifacts import stable_json_hash

# what a saved model's generation_config.json holds and every decoding step uses
DECODING = (
    "eval.max_new_tokens",
    "eval.no_repeat_ngram_size",
    "eval.repetition_penalty",
    "eval.one_sentence",
)
# readable without a declaration: where and how fast a step runs, not what it computes
RUNTIME = ("name", "device", "threads", "max_memory")
SECTIONS = ("data", "teacher", "cache", "student", "eval")


class UndeclaredSettingError(RuntimeError):
    """A stage read a profile field its asset's spec does not declare."""


def field_value(profile: Any, path: str) -> Any:
    """The value of dotted field `path` ("student.alpha", "seed") of a profile."""
    value = profile
    for part in path.split("."):
        if not hasattr(value, part):
            raise KeyError(f"{path!r} is not a profile field")
        value = getattr(value, part)
    return value


def all_fields(profile: Any) -> tuple[str, ...]:
    """Every leaf field of a profile, dotted."""
    out: list[str] = []
    for f in fields(profile):
        value = getattr(profile, f.name)
        if is_dataclass(value):
            out += [f"{f.name}.{g.name}" for g in fields(value)]
        else:
            out.append(f.name)
    return tuple(out)


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True)
class AssetSpec:
    name: str  # the asset key
    code: str  # bumped by hand when the body's meaning changes
    fields: tuple[str, ...] = ()  # dotted profile fields the body reads
    prompt: bool = False  # builds prompts: the prompt builder's version counts
    decoding: bool = False  # decodes (or saves a generation_config.json): the DECODING fields count
    # fields this asset pins to a value whatever the profile says, e.g. (("eval.test_sample", None),)
    fixed: tuple[tuple[str, Any], ...] = ()

    @property
    def declared(self) -> tuple[str, ...]:
        """The fields read from the profile (the pinned ones are not: the profile cannot change them)."""
        pinned = dict(self.fixed)
        return tuple(
            f for f in dict.fromkeys(self.fields + (DECODING if self.decoding else ())) if f not in pinned
        )

    def settings(self, profile: Any) -> dict[str, Any]:
        """The declared fields' values in `profile`, and the pinned ones (JSON-ready)."""
        return {
            **{f: _jsonable(field_value(profile, f)) for f in self.declared},
            **{f: _jsonable(v) for f, v in self.fixed},
        }

    def code_version(self, profile: Any) -> str:
        """Dagster's code version: the tag, the prompt version (when it builds prompts) and a short hash
        of the declared fields' values."""
        parts = [self.code]
        if self.prompt:
            from summ_assets.core.prompts import prompt_version

            parts.append(prompt_version())
        if self.declared or self.fixed:
            parts.append(stable_json_hash(self.settings(profile))[:8])
        return "+".join(parts)

    def key(self, profile: Any, inputs: dict[str, Any]) -> str:
        """The artifact folder name: this spec's code version plus the upstream versions in `inputs`."""
        return stable_json_hash({"spec": self.code_version(profile), "inputs": inputs})[:16]

    def view(self, profile: Any) -> ProfileView:
        """`profile` (or another view's profile) as this spec may read it."""
        if isinstance(profile, ProfileView):
            if profile.spec == self:
                return profile
            profile = profile.profile
        return ProfileView(profile, self)


_logged: set[tuple[str, str, str]] = set()


def _record(asset: str, path: str) -> None:
    log = env.get(env.SPEC_READ_LOG)
    if not log or (log, asset, path) in _logged:
        return
    _logged.add((log, asset, path))
    with open(log, "a", encoding="utf-8") as f:
        f.write(json.dumps({"asset": asset, "field": path}) + "\n")


class ProfileView:
    """Read-only access to the fields `spec` declares (plus `RUNTIME`); any other read raises."""

    def __init__(self, profile: Any, spec: AssetSpec, overrides: dict[str, Any] | None = None) -> None:
        object.__setattr__(self, "profile", profile)
        object.__setattr__(self, "spec", spec)
        object.__setattr__(self, "_overrides", dict(overrides or {}))

    def read(self, path: str) -> Any:
        pinned = dict(self.spec.fixed)
        if path in pinned:
            _record(self.spec.name, path)
            return pinned[path]
        if path not in RUNTIME and path not in self.spec.declared:
            raise UndeclaredSettingError(
                f"asset {self.spec.name!r} read the profile field {path!r}, which its spec does not "
                f"declare: add it to the spec's fields (summ_assets/stages/specs.py) so that a change of "
                "it rebuilds the asset"
            )
        _record(self.spec.name, path)
        if path in self._overrides:
            return self._overrides[path]
        return field_value(self.profile, path)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name in SECTIONS:
            return _SectionView(self, name)
        return self.read(name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a profile view is read-only")

    def with_values(self, changed: dict[str, Any]) -> ProfileView:
        """A view whose declared fields in `changed` (dotted: {"student.max_steps": 12}) read as given."""
        for path in changed:
            if path not in self.spec.declared:
                raise UndeclaredSettingError(f"{self.spec.name}: cannot set undeclared field {path!r}")
        return ProfileView(self.profile, self.spec, {**self._overrides, **changed})

    def settings(self) -> dict[str, Any]:
        """The declared fields' values as this view reads them (model cards, reports)."""
        return {
            f: _jsonable(self._overrides.get(f, field_value(self.profile, f))) for f in self.spec.declared
        }

    def section(self, name: str) -> dict[str, Any]:
        """The declared fields of one section, as a dict (model cards)."""
        prefix = f"{name}."
        return {k[len(prefix) :]: v for k, v in self.settings().items() if k.startswith(prefix)}


class _SectionView:
    def __init__(self, parent: ProfileView, section: str) -> None:
        object.__setattr__(self, "_parent", parent)
        object.__setattr__(self, "_section", section)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._parent.read(f"{self._section}.{name}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a profile view is read-only")
