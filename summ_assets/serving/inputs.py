"""Documents from the outside (a file named on the command line, an HTTP body) checked and decoded.

The same checks as `summ_assets.core.documents.read_document`; every failure is a `DocumentError`
naming the source (too big, empty, binary, invalid UTF-8 with line:col, only whitespace).
"""

from __future__ import annotations

from pathlib import Path

from summ_assets.core.documents import DocumentError, decode_utf8


def decode_document(data: bytes, source: str, max_bytes: int | None = None) -> str:
    """Validate and decode one document's bytes like `core.documents.read_document` does.

    Raises `DocumentError` naming `source` (too big, empty, binary, invalid UTF-8 with line:col, blank).
    """
    if max_bytes is not None and len(data) > max_bytes:
        raise DocumentError(f"{source}: {len(data):,} bytes exceeds the size limit of {max_bytes:,} bytes")
    if not data:
        raise DocumentError(f"{source}: empty (no bytes); send the document's text")
    text = decode_utf8(data, source)
    if not text.strip():
        raise DocumentError(f"{source}: has no text (only whitespace)")
    return text


def read_input_file(path: str | Path, max_bytes: int) -> str:
    """Read a document named on the command line; every failure is a DocumentError naming the file."""
    p = Path(path)
    if not p.exists():
        raise DocumentError(f"{p}: no such file")
    if not p.is_file():
        raise DocumentError(f"{p}: not a regular file")
    size = p.stat().st_size
    if size > max_bytes:
        raise DocumentError(f"{p}: {size:,} bytes exceeds the size limit of {max_bytes:,} bytes")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise DocumentError(f"{p}: cannot be read ({exc.strerror or exc})") from exc
    return decode_document(data, str(p), max_bytes)
