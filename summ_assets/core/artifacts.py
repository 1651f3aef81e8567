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
from summ_assets.core.processes import alive_since


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
    sweep_leftovers(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-{os.getpid()}-", dir=target.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target.exists():
        if not replace_existing:
            shutil.rmtree(tmp, ignore_errors=True)
            return
        old = set_aside(target)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


def sweep_leftovers(target: Path) -> list[Path]:
    """Remove the ``.tmp-<name>-<pid>-*`` / ``.old-<name>-<pid>`` siblings of `target` whose writer
    process is gone (a write killed half-way): never mistaken for artifacts (hidden names), and never
    left to pile up. A live writer's folders are left alone. Returns what was removed."""
    target = Path(target)
    removed = []
    for kind in (".tmp", ".old"):
        for p in target.parent.glob(f"{kind}-{target.name}-*"):
            pid_part = p.name[len(f"{kind}-{target.name}-") :].split("-", 1)[0]
            try:
                alive = alive_since(int(pid_part), p.stat().st_mtime)
            except (ValueError, OSError):
                alive = False  # no pid in the name: written before pids were recorded
            if not alive and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    return removed


def set_aside(target: Path) -> Path:
    """Rename `target` to a hidden ``.old-<name>-<pid>`` sibling (one atomic step: readers see the
    whole folder or none of it) and return the new path; the caller removes it."""
    target = Path(target)
    old = target.with_name(f".old-{target.name}-{os.getpid()}")
    if old.exists():  # left by an earlier crash of a process with the same pid
        shutil.rmtree(old, ignore_errors=True)
    os.replace(target, old)
    return old


def remove_dir(target: Path) -> None:
    """Remove an artifact folder safely: rename it aside first, so a crash half-way through the
    delete never leaves a partial folder under the name readers look for."""
    shutil.rmtree(set_aside(target), ignore_errors=True)


def cached_artifact(
    target: Path,
    build: Callable[[Path], Any],
    *,
    log: Callable[[str], None] | None = None,
    check: Callable[[Path], str | None] | None = None,
) -> bool:
    """Reuse `target` when it exists, else `build(tmp)` into a temp folder renamed to `target` when done.

    The one reuse-or-build rule of every content-addressed artifact: `target` is named by a key of
    everything that shapes it, so an existing folder is complete (renames are atomic) and current.
    A disk can still truncate or lose a file afterwards: `check(target)` (see `core/integrity.py`)
    returns a problem description for a damaged folder (None when complete); a damaged folder is
    logged, removed (renamed aside, then deleted) and built again.
    Returns True when it was built now. `log` hears which of these happened.
    """
    target = Path(target)
    if target.exists():
        problem = check(target) if check is not None else None
        if problem is None:
            if log is not None:
                log(f"{target} exists for these inputs; reusing it")
            return False
        if log is not None:
            log(f"{target} is damaged ({problem}); rebuilding")
        remove_dir(target)
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
