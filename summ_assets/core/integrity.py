"""Is an artifact folder still whole? Cheap checks for the files a user's disk can cut short or lose.

A content-addressed folder is complete when it is renamed into place, but a disk can still truncate
or lose one of its files afterwards. Each checker returns ``None`` for a complete artifact or one
short problem description that names the file (relative to the folder it was given), e.g.
``"model.safetensors truncated (1024 of 8192 bytes)"``; `cached_artifact(..., check=...)` rebuilds a
folder whose check reports a problem, and readers raise `ArtifactError` with the same words and the
command that fixes it (`rebuild_hint`).

No weights are loaded: a safetensors file is judged by its header (opened with
`safetensors.safe_open`) and the byte ranges it declares against the file's size; a Parquet file by
its footer and every row group.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable, Iterable
from pathlib import Path

from summ_assets.core.artifacts import artifacts_root

_ASSET_NAME = re.compile(r"[a-z][a-z0-9_]*")


class ArtifactError(RuntimeError):
    """An artifact (a folder under the artifacts root, or a model folder) is damaged or incomplete."""


def _rel(path: Path, base: Path | None) -> str:
    if base is not None:
        try:
            return Path(path).relative_to(base).as_posix()
        except ValueError:
            pass
    return Path(path).name


def _short(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_json(path: Path, base: Path | None = None) -> str | None:
    """`path` exists and parses as JSON."""
    name = _rel(path, base)
    try:
        json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"{name} missing"
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return f"{name} unreadable ({_short(exc)})"
    return None


def check_files_exist(folder: Path, names: Iterable[str]) -> str | None:
    """Every file in `names` (relative to `folder`) exists."""
    for name in names:
        if not (Path(folder) / name).is_file():
            return f"{name} missing"
    return None


def check_safetensors_file(path: Path, base: Path | None = None) -> str | None:
    """The header of a safetensors file opens and every tensor's byte range lies inside the file."""
    name = _rel(path, base)
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                return f"{name} truncated ({size} bytes: no safetensors header)"
            (n,) = struct.unpack("<Q", head)
            if 8 + n > size:
                return f"{name} truncated ({size} bytes, its header alone needs {8 + n})"
            header = json.loads(fh.read(n))
    except FileNotFoundError:
        return f"{name} missing"
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return f"{name} has an unreadable header ({_short(exc)})"
    if not isinstance(header, dict):
        return f"{name} has an unreadable header (not a JSON object)"
    end = 0
    for key, info in header.items():
        if key == "__metadata__":
            continue
        try:
            begin, stop = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            return f"{name} has an unreadable header (tensor {key!r} has no data_offsets)"
        if not 0 <= begin <= stop:
            return f"{name} has an unreadable header (tensor {key!r} offsets {begin}..{stop})"
        end = max(end, stop)
    if 8 + n + end > size:
        return f"{name} truncated ({size} of {8 + n + end} bytes)"
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="np") as fh:
            fh.keys()
    except Exception as exc:  # safetensors raises its own SafetensorError (an Exception subclass)
        return f"{name} unreadable ({_short(exc)})"
    return None


def check_model_folder(path: Path) -> str | None:
    """A `save_pretrained` folder: config.json parses, at least one *.safetensors file (all of an
    index's shards when ``model.safetensors.index.json`` is there), each with a sound header whose
    tensors fit the file."""
    path = Path(path)
    if not path.is_dir():
        return "folder missing"
    if problem := check_json(path / "config.json", path):
        return problem
    files = sorted(path.glob("*.safetensors"))
    index = path / "model.safetensors.index.json"
    if index.exists():
        if problem := check_json(index, path):
            return problem
        try:
            wanted = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (KeyError, AttributeError, TypeError) as exc:
            return f"{index.name} unreadable (no weight_map: {_short(exc)})"
        for name in wanted:
            if not (path / name).is_file():
                return f"{name} missing (listed in {index.name})"
    if not files:
        return "model.safetensors missing (no *.safetensors weights in the folder)"
    for f in files:
        if problem := check_safetensors_file(f, path):
            return problem
    return None


def check_parquet_files(paths: Iterable[Path], base: Path | None = None) -> str | None:
    """Each Parquet file exists, its footer (metadata) reads and every row group reads."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for p in paths:
        name = _rel(p, base)
        try:
            pf = pq.ParquetFile(p)
            for i in range(pf.num_row_groups):
                pf.read_row_group(i)
        except FileNotFoundError:
            return f"{name} missing"
        except (pa.ArrowException, OSError, ValueError) as exc:
            return f"{name} truncated or unreadable ({_short(exc)})"
    return None


def within(prefix: str, problem: str | None) -> str | None:
    """`problem` of a sub-folder, named from its parent (``merged/model.safetensors missing``)."""
    return None if problem is None else f"{prefix.rstrip('/')}/{problem}"


def first_problem(*checks: Callable[[], str | None]) -> str | None:
    """The first problem any of `checks` reports (later checks do not run)."""
    for check in checks:
        if problem := check():
            return problem
    return None


def artifact_asset(path: Path) -> str | None:
    """The asset an artifact path belongs to: ``<root>/<asset>/<key>/...`` under the configured
    artifacts root, or under any folder named ``artifacts``; None when it is neither."""
    p = Path(path).absolute()
    try:
        rel = p.relative_to(artifacts_root())
        if len(rel.parts) >= 2 and _ASSET_NAME.fullmatch(rel.parts[0]):
            return rel.parts[0]
    except ValueError:
        pass
    parts = p.parts
    for i in range(len(parts) - 3, -1, -1):
        if parts[i] == "artifacts" and _ASSET_NAME.fullmatch(parts[i + 1]):
            return parts[i + 1]
    return None


def rebuild_hint(path: Path, otherwise: str = "re-save the model folder") -> str:
    """What fixes a damaged artifact at `path`: re-materializing its asset, or `otherwise`."""
    asset = artifact_asset(path)
    return f"re-materialize it: summ-assets refresh --force {asset}" if asset else otherwise


def require_model_folder(path: Path) -> None:
    """Raise `ArtifactError` (folder, problem, fix) unless `path` passes `check_model_folder`."""
    if problem := check_model_folder(path):
        raise ArtifactError(f"model folder {path} is damaged ({problem}); {rebuild_hint(path)}")
