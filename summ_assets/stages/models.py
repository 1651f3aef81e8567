"""Base-model stages: resolved per profile (built tiny, converted GGUF, pruned, hub/local); no dagster
import here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from summ_assets.core.artifacts import cached_artifact, sha256_dir, stable_json_hash, write_json
from summ_assets.core.documents import discover, read_document
from summ_assets.core.integrity import check_files_exist, check_json, check_model_folder, first_problem
from summ_assets.core.models import (
    build_tiny_model,
    convert_gemma3_gguf,
    prune_layers,
    resolve_pretrained,
    tokenizer_fingerprint,
    train_tiny_tokenizer,
)
from summ_assets.core.profiles import Profile
from summ_assets.core.spec import ProfileView
from summ_assets.stages.base import Progress, StageError, StageResult, meta, say
from summ_assets.stages.specs import STUDENT_BASE, TEACHER_BASE


def folder_version(path: Path) -> str:
    marker = path / ".summ_version"
    if marker.exists():
        return marker.read_text().strip()
    return sha256_dir(path)[:16]


def _finish(path: Path, info: dict, kind: str) -> StageResult:
    version = folder_version(path)
    cfg = json.loads((path / "config.json").read_text())
    metadata = {
        "artifact": meta(str(path), "path"),
        "dagster/uri": meta(str(path), "text"),
        "source": meta(info.get("source", kind), "text"),
        "model_type": meta(cfg.get("model_type", ""), "text"),
        "num_hidden_layers": meta(
            int(cfg.get("num_hidden_layers") or cfg.get("text_config", {}).get("num_hidden_layers", 0)), "int"
        ),
        "vocab_size": meta(int(cfg.get("vocab_size") or 0), "int"),
    }
    if "parameters" in info:
        metadata["parameters"] = meta(int(info["parameters"]), "int")
    if "kept_layers" in info:
        metadata["kept_layers"] = meta(str(info["kept_layers"]), "text")
    return StageResult(value={"path": str(path), **info}, metadata=metadata, data_version=version)


def check_base_folder(folder: Path) -> str | None:
    """None when a built base-model folder is whole: the model folder and its .summ_version stamp
    (its data version: without it the folder would silently hash to another version)."""
    return first_problem(
        lambda: check_model_folder(folder), lambda: check_files_exist(folder, [".summ_version"])
    )


def check_pruned_folder(folder: Path) -> str | None:
    """`check_base_folder` + pruning.json parses."""
    return first_problem(
        lambda: check_base_folder(folder), lambda: check_json(folder / "pruning.json", folder)
    )


def _stamp(tmp: Path, payload: dict) -> None:
    (tmp / ".summ_version").write_text(stable_json_hash({"dir": sha256_dir(tmp), **payload})[:16])


def teacher_base_stage(
    profile: Profile | ProfileView,
    root: Path,
    data_root: Path,
    artifacts_root: Path,
    log: Progress | None = None,
) -> StageResult:
    """The teacher's base model folder (tiny: built from config; demo: Gemma 3 270M converted once
    from the GGUF package; gemma2: a hub id or local folder)."""
    profile = TEACHER_BASE.view(profile)
    src = profile.teacher.source
    seed = profile.seed
    root = Path(root)
    if src == "tiny:teacher":
        docs = discover(data_root, ("raw",))
        texts = [read_document(data_root, d).text for d in sorted(docs.values())]
        if not texts:
            raise StageError(f"no documents under {Path(data_root) / 'raw'} to train the tiny tokenizer on")
        key = TEACHER_BASE.key(profile.profile, {"texts": [t[:64] for t in texts], "n": len(texts)})
        target = root / f"tiny-{key}"

        def build_teacher(tmp: Path) -> None:
            train_tiny_tokenizer(texts, tmp)
            build_tiny_model("teacher", tmp, tmp, seed=seed)
            _stamp(tmp, {"src": src})

        cached_artifact(target, build_teacher, log=log, check=check_base_folder)
        say(log, f"tiny teacher at {target}")
        return _finish(target, {"source": src}, "tiny")
    if src.startswith("gguf:"):
        target = root / f"gguf-gemma3-270m-{TEACHER_BASE.key(profile.profile, {})}"

        def convert(tmp: Path) -> None:
            say(log, "converting Gemma 3 270M GGUF -> safetensors (once; ~1-2 min)")
            convert_gemma3_gguf(tmp, Path(artifacts_root) / "_cache" / "gguf")
            _stamp(tmp, {"src": src})

        cached_artifact(target, convert, log=log, check=check_base_folder)
        return _finish(target, {"source": src}, "gguf")
    info = resolve_pretrained(src, root)
    return _finish(Path(info["path"]), {"source": src, **info}, "pretrained")


def student_base_stage(
    profile: Profile | ProfileView, root: Path, teacher_base: dict[str, Any], log: Progress | None = None
) -> StageResult:
    """The student's starting point (tiny: random small model sharing the teacher's tokenizer;
    demo: the teacher's base depth-pruned; gemma2: a hub id or local folder). Tokenizer identity
    with the teacher is checked."""
    profile = STUDENT_BASE.view(profile)
    src = profile.student.source
    seed = profile.seed
    root = Path(root)
    tdir = Path(teacher_base["path"])
    if src == "tiny:student":
        target = root / f"tiny-{STUDENT_BASE.key(profile.profile, {'teacher': folder_version(tdir)})}"

        def build_student(tmp: Path) -> None:
            build_tiny_model("student", tdir, tmp, seed=seed)
            _stamp(tmp, {"src": src, "teacher": folder_version(tdir)})

        cached_artifact(target, build_student, log=log, check=check_base_folder)
        info: dict = {"source": src}
    elif src.startswith("prune:"):
        layers = src.split(":", 1)[1]
        target = root / f"pruned-{STUDENT_BASE.key(profile.profile, {'teacher': folder_version(tdir)})}"
        info_file = target / "pruning.json"

        def prune(tmp: Path) -> None:
            write_json(tmp / "pruning.json", prune_layers(tdir, tmp, layers))
            _stamp(tmp, {"src": src, "teacher": folder_version(tdir)})

        cached_artifact(target, prune, log=log, check=check_pruned_folder)
        info = {"source": src, **json.loads(info_file.read_text())}
        say(log, f"pruned student keeps layers {info['kept_layers']} of {info['base_layers']}")
    else:
        info = resolve_pretrained(src, root)
        target = Path(info["path"])
        info["source"] = src
    from transformers import AutoTokenizer

    t_fp = tokenizer_fingerprint(AutoTokenizer.from_pretrained(tdir))
    s_fp = tokenizer_fingerprint(AutoTokenizer.from_pretrained(target))
    if t_fp != s_fp:
        raise StageError(
            f"student tokenizer ({target}) differs from the teacher's ({tdir}): token-level distillation needs "
            "the same vocabulary and chat template"
        )
    info["tokenizer_fingerprint"] = s_fp
    return _finish(target, info, "student")
