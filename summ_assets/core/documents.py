"""Reading raw documents safely: discovery, partition keys, decoding, validation.

A document is a Markdown or plain-text file under one of the data sources (``raw/`` for the
training pool, ``pool/`` for real documentation pages without labels that join the training pool as
teacher-labelling material, ``eval/similar/`` and ``eval/new/`` for held-out test material). Its doc id is its
path relative to the data root (``raw/ko-rag.md``); its partition key is a sanitized, collision-free
form of that id. Nothing here ever writes under the data root.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

SOURCES = ("raw", "pool", "eval/similar", "eval/new")
UNLABELLED_POOL = "pool"  # real pages without labels (data/SOURCES.md): capped by `data.pool_documents`
EXTENSIONS = (".md", ".markdown", ".txt")
DEFAULT_MAX_BYTES = 2_000_000


class DocumentError(ValueError):
    """A document that cannot be ingested; the message names the file and what to do."""


@dataclass(frozen=True)
class RawDocument:
    doc_id: str
    path: Path
    text: str
    sha256: str
    n_bytes: int
    had_bom: bool
    newline: str


def partition_key(doc_id: str) -> str:
    """Stable, UI-safe key: readable slug + 8 hex of the full id (no commas, no slashes)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", doc_id).strip("_")[:60] or "doc"
    digest = hashlib.sha256(doc_id.encode()).hexdigest()[:8]
    return f"{slug}-{digest}"


def pool_rank_key(doc_id: str) -> str:
    """Stable order of the ``pool/`` documents: a cap of N takes the N lowest, so raising it only adds."""
    return hashlib.sha256(f"pool-document\x00{doc_id}".encode()).hexdigest()


def discover(
    data_root: Path, sources: tuple[str, ...] = SOURCES, pool_documents: int | None = None
) -> dict[str, str]:
    """{partition key: doc id} for every supported file under the sources (sorted, deterministic).

    `pool_documents` caps the ``pool/`` documents (None = all): the first ones by `pool_rank_key`.
    Files with other extensions are skipped here and reported by `unsupported_files`.
    """
    data_root = Path(data_root)
    found: dict[str, str] = {}
    for src in sources:
        base = data_root / src
        if not base.is_dir():
            continue
        for p in sorted(base.rglob("*")):
            if p.name.startswith(".") or not (p.is_file() or p.is_symlink()):
                continue
            if p.suffix.lower() not in EXTENSIONS:
                continue
            if src == "raw" and any(part == "eval" for part in p.relative_to(base).parts[:1]):
                continue
            doc_id = p.relative_to(data_root).as_posix()
            found[partition_key(doc_id)] = doc_id
    if pool_documents is not None:
        pool = sorted((d for d in found.values() if d.startswith(UNLABELLED_POOL + "/")), key=pool_rank_key)
        for d in pool[pool_documents:]:
            del found[partition_key(d)]
    return found


def unsupported_files(data_root: Path, sources: tuple[str, ...] = SOURCES) -> list[str]:
    out = []
    for src in sources:
        base = Path(data_root) / src
        if base.is_dir():
            out += [
                p.relative_to(data_root).as_posix()
                for p in sorted(base.rglob("*"))
                if p.is_file() and not p.name.startswith(".") and p.suffix.lower() not in EXTENSIONS
            ]
    return out


def read_document(data_root: Path, doc_id: str, max_bytes: int = DEFAULT_MAX_BYTES) -> RawDocument:
    """Read and validate one document; every failure is a DocumentError naming the file."""
    data_root = Path(data_root).resolve()
    path = data_root / doc_id
    if ".." in Path(doc_id).parts or Path(doc_id).is_absolute():
        raise DocumentError(f"{doc_id}: path escapes the data folder")
    if path.suffix.lower() not in EXTENSIONS:
        raise DocumentError(
            f"{path}: unsupported extension {path.suffix!r}; supported: {', '.join(EXTENSIONS)}"
        )
    if not path.exists() and not path.is_symlink():
        raise DocumentError(
            f"{path}: file is gone (deleted after its partition was created); "
            "the sensor drops its partition on the next tick, or re-add the file"
        )
    real = path.resolve()
    if not real.is_relative_to(data_root):
        raise DocumentError(f"{path}: symlink points outside the data folder ({real}); refusing to read it")
    if not real.is_file():
        raise DocumentError(f"{path}: not a regular file")
    n_bytes = real.stat().st_size
    if n_bytes == 0:
        raise DocumentError(f"{path}: file is empty")
    if n_bytes > max_bytes:
        raise DocumentError(
            f"{path}: {n_bytes:,} bytes exceeds the size limit of {max_bytes:,} bytes (DataConfig.max_file_bytes)"
        )
    data = real.read_bytes()
    had_bom = data.startswith(b"\xef\xbb\xbf")
    text = decode_utf8(data, str(path))
    if not text.strip():
        raise DocumentError(f"{path}: file has no text (only whitespace)")
    newline = "\r\n" if "\r\n" in text else "\n"
    return RawDocument(
        doc_id=doc_id,
        path=path,
        text=text,
        sha256=hashlib.sha256(data).hexdigest(),
        n_bytes=n_bytes,
        had_bom=had_bom,
        newline=newline,
    )


def decode_utf8(data: bytes, source: str) -> str:
    """UTF-8 text of `data` (BOM dropped); DocumentError naming `source` and line:col when it is not."""
    if b"\x00" in data[:8192]:
        raise DocumentError(f"{source}: looks binary (NUL bytes); only UTF-8 Markdown/text is supported")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DocumentError(
            f"{source}:{line}:{col}: invalid UTF-8 (byte 0x{data[exc.start]:02x}); re-save the file as UTF-8"
        ) from exc
