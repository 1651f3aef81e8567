"""Content-addressed artifact folders, written atomically.

Layout: ``<root>/<asset>/<version>/...``. Writers fill a hidden temp folder beside the target and
rename it into place only when complete, so a crash never leaves a readable partial artifact and a
failed run never replaces the last good one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from summ_assets.core import env


def artifacts_root() -> Path:
    """`$SUMM_ARTIFACTS` (default ``./artifacts``), absolute."""
    return Path(env.get(env.ARTIFACTS)).resolve()


def data_root() -> Path:
    """`$SUMM_DATA` (default ``./data``), absolute."""
    return Path(env.get(env.DATA)).resolve()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_dir(path: Path, exclude: Iterable[str] = ("README.md", "card.json")) -> str:
    """Hash of a folder's files (relative names + contents), ignoring `exclude` names."""
    skip = set(exclude)
    h = hashlib.sha256()
    for p in sorted(q for q in Path(path).rglob("*") if q.is_file()):
        rel = p.relative_to(path).as_posix()
        if p.name in skip or "/checkpoint-" in f"/{rel}":
            continue
        h.update(rel.encode())
        h.update(sha256_file(p).encode())
    return h.hexdigest()


def stable_json_hash(obj: Any) -> str:
    return sha256_bytes(json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str).encode())


@contextlib.contextmanager
def atomic_dir(target: Path, *, replace_existing: bool = True) -> Iterator[Path]:
    """Yield a temp folder; on success rename it to `target` (replacing an older copy).

    On any exception the temp folder is removed and `target` is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target.exists():
        if not replace_existing:
            shutil.rmtree(tmp, ignore_errors=True)
            return
        old = target.with_name(f".old-{target.name}-{os.getpid()}")
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


def cached_artifact(
    target: Path, build: Callable[[Path], Any], *, log: Callable[[str], None] | None = None
) -> bool:
    """Reuse `target` when it exists, else `build(tmp)` into a temp folder renamed to `target` when done.

    The one reuse-or-build rule of every content-addressed artifact: `target` is named by a key of
    everything that shapes it, so an existing folder is complete (renames are atomic) and current.
    Returns True when it was built now. `log` hears which of the two happened.
    """
    target = Path(target)
    if target.exists():
        if log is not None:
            log(f"{target} exists for these inputs; reusing it")
        return False
    with atomic_dir(target) as tmp:
        build(tmp)
    if log is not None:
        log(f"built {target}")
    return True


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")
