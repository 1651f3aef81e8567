"""Base models as assets: resolved per profile (built tiny, converted GGUF, pruned, hub/local)."""

import json
from pathlib import Path

import dagster as dg

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
from summ_assets.defs.common import MODELS_GROUP, code_version
from summ_assets.defs.resources import SummSettings

GROUP = MODELS_GROUP


def _folder_version(path: Path) -> str:
    marker = path / ".summ_version"
    if marker.exists():
        return marker.read_text().strip()
    return sha256_dir(path)[:16]


def _finish(path: Path, info: dict, kind: str) -> dg.Output:
    version = _folder_version(path)
    cfg = json.loads((path / "config.json").read_text())
    meta = {
        "artifact": dg.MetadataValue.path(str(path)),
        "dagster/uri": str(path),
        "source": info.get("source", kind),
        "model_type": cfg.get("model_type", ""),
        "num_hidden_layers": int(
            cfg.get("num_hidden_layers") or cfg.get("text_config", {}).get("num_hidden_layers", 0)
        ),
        "vocab_size": int(cfg.get("vocab_size") or 0),
    }
    for k in ("parameters",):
        if k in info:
            meta[k] = int(info[k])
    if "kept_layers" in info:
        meta["kept_layers"] = str(info["kept_layers"])
    return dg.Output({"path": str(path), **info}, data_version=dg.DataVersion(version), metadata=meta)


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


@dg.asset(
    group_name=GROUP,
    code_version=code_version("teacher-base-v1", "teacher.source"),
    kinds={"pytorch", "huggingface"},
)
def teacher_base(context: dg.AssetExecutionContext, settings: SummSettings) -> dg.Output:
    """The teacher's base model folder (tiny: built from config; demo: Gemma 3 270M converted once
    from the GGUF package; gemma2: a hub id or local folder)."""
    profile = settings.get_profile()
    src = profile.teacher.source
    root = settings.asset_dir("teacher_base")
    if src == "tiny:teacher":
        docs = discover(settings.data_root, ("raw",))
        texts = [read_document(settings.data_root, d).text for d in sorted(docs.values())]
        if not texts:
            raise dg.Failure(
                f"no documents under {settings.data_root / 'raw'} to train the tiny tokenizer on"
            )
        key = stable_json_hash({"src": src, "texts": [t[:64] for t in texts], "n": len(texts)})[:12]
        target = root / f"tiny-{key}"

        def build_teacher(tmp: Path) -> None:
            train_tiny_tokenizer(texts, tmp)
            build_tiny_model("teacher", tmp, tmp, seed=profile.seed)
            _stamp(tmp, {"src": src})

        cached_artifact(target, build_teacher, log=context.log.info, check=check_base_folder)
        context.log.info(f"tiny teacher at {target}")
        return _finish(target, {"source": src}, "tiny")
    if src.startswith("gguf:"):
        target = root / "gguf-gemma3-270m"

        def convert(tmp: Path) -> None:
            context.log.info("converting Gemma 3 270M GGUF -> safetensors (once; ~1-2 min)")
            convert_gemma3_gguf(tmp, settings.artifacts_root / "_cache" / "gguf")
            _stamp(tmp, {"src": src})

        cached_artifact(target, convert, log=context.log.info, check=check_base_folder)
        return _finish(target, {"source": src}, "gguf")
    info = resolve_pretrained(src, root)
    return _finish(Path(info["path"]), {"source": src, **info}, "pretrained")


@dg.asset(
    group_name=GROUP,
    code_version=code_version("student-base-v1", "student.source"),
    kinds={"pytorch", "huggingface"},
)
def student_base(context: dg.AssetExecutionContext, settings: SummSettings, teacher_base: dict) -> dg.Output:
    """The student's starting point (tiny: random small model sharing the teacher's tokenizer;
    demo: the teacher's base depth-pruned; gemma2: a hub id or local folder). Tokenizer identity
    with the teacher is checked."""
    profile = settings.get_profile()
    src = profile.student.source
    root = settings.asset_dir("student_base")
    tdir = Path(teacher_base["path"])
    if src == "tiny:student":
        target = root / f"tiny-{_folder_version(tdir)}"

        def build_student(tmp: Path) -> None:
            build_tiny_model("student", tdir, tmp, seed=profile.seed)
            _stamp(tmp, {"src": src, "teacher": _folder_version(tdir)})

        cached_artifact(target, build_student, log=context.log.info, check=check_base_folder)
        info: dict = {"source": src}
    elif src.startswith("prune:"):
        spec = src.split(":", 1)[1]
        target = root / f"pruned-{stable_json_hash({'t': _folder_version(tdir), 's': spec})[:12]}"
        info_file = target / "pruning.json"

        def prune(tmp: Path) -> None:
            write_json(tmp / "pruning.json", prune_layers(tdir, tmp, spec))
            _stamp(tmp, {"src": src, "teacher": _folder_version(tdir)})

        cached_artifact(target, prune, log=context.log.info, check=check_pruned_folder)
        info = {"source": src, **json.loads(info_file.read_text())}
        context.log.info(f"pruned student keeps layers {info['kept_layers']} of {info['base_layers']}")
    else:
        info = resolve_pretrained(src, root)
        target = Path(info["path"])
        info["source"] = src
    from transformers import AutoTokenizer

    t_fp = tokenizer_fingerprint(AutoTokenizer.from_pretrained(tdir))
    s_fp = tokenizer_fingerprint(AutoTokenizer.from_pretrained(target))
    if t_fp != s_fp:
        raise dg.Failure(
            f"student tokenizer ({target}) differs from the teacher's ({tdir}): token-level distillation needs "
            "the same vocabulary and chat template"
        )
    info["tokenizer_fingerprint"] = s_fp
    return _finish(target, info, "student")
