"""Body of the `document_changes[doc]` asset (plain Python, no Dagster): a document's version against
its previous one.

The alignment of the two versions (`serving.compare`), with both summaries of every changed section
from the promoted student when there is one (cached by section content and model, so a section is
summarized once), the alignment alone before any promotion. Each version's text is kept,
content-addressed, beside the results: the file under data/ holds only the newest.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from summ_assets.core.artifacts import atomic_write_bytes


@dataclass(frozen=True)
class ChangesResult:
    """What `document_changes_stage` found: `result` is `serving.compare`'s JSON (None for a first
    version), `model` the promoted student that wrote the summaries (None: alignment alone)."""

    sha256: str
    previous_sha256: str | None
    result: dict[str, Any] | None
    model: dict[str, Any] | None
    path: Path | None
    note: str


def version_path(root: Path, sha256: str) -> Path:
    return root / "versions" / f"{sha256[:24]}.md"


def document_changes_stage(
    doc_id: str,
    text: str,
    sha256: str,
    root: Path,
    last: dict[str, Any] | None,
    summarizer_factory: Callable[[], Any] | None = None,
    cache_dir: Path | None = None,
    log: Callable[[str], None] = print,
) -> ChangesResult:
    """Compare `text` (the document's current version) with its previous one.

    `root` is the partition's folder; `last` the metadata of this partition's last materialization
    (``sha256``, ``previous_sha256``), None for the first. A re-run on unchanged content compares with
    the same previous version again. `summarizer_factory` loads the promoted student (None: alignment
    alone); it is called only when a section changed."""
    from summ_assets.serving.compare import compare_documents, model_identity, plan_comparison

    keep = version_path(root, sha256)
    if not keep.is_file():
        atomic_write_bytes(keep, text.encode("utf-8"))
    previous = None
    if last:
        previous = last.get("previous_sha256") if last.get("sha256") == sha256 else last.get("sha256")
    if not previous:
        return ChangesResult(sha256, None, None, None, None, "first version: nothing to compare")
    old_path = version_path(root, previous)
    if not old_path.is_file():
        note = f"the previous version's copy {old_path} is gone; nothing to compare"
        log(note)
        return ChangesResult(sha256, previous, None, None, None, note)
    old_text = old_path.read_text(encoding="utf-8")
    changed = any(
        p.status != "unchanged"
        for p in plan_comparison(old_text, text, old_source=str(old_path), new_source=doc_id).alignment.pairs
    )
    summ = summarizer_factory() if (changed and summarizer_factory is not None) else None
    try:
        result = compare_documents(
            old_text, text, summ, cache_dir, old_source=str(old_path), new_source=doc_id
        )
        model = model_identity(summ) if summ is not None else None
    finally:
        if summ is not None:
            summ.close()
    out = root / f"{previous[:12]}..{sha256[:12]}.json"
    atomic_write_bytes(
        out, json.dumps({"doc_id": doc_id, **result, "model_identity": model}, ensure_ascii=False).encode()
    )
    how = (
        "alignment and the promoted student's summaries" if model else "alignment alone (no promoted student)"
    )
    return ChangesResult(sha256, previous, result, model, out, f"compared with {previous[:12]}: {how}")


def change_rows(result: dict[str, Any]) -> list[dict[str, str]]:
    """One row per section that is not unchanged: status, old and new heading, what changed, both
    summaries (what the asset page's table shows)."""
    rows = []
    for s in result["sections"]:
        flags = [f for f in ("heading_changed", "moved") if s.get(f)]
        if s["status"] == "unchanged" and not flags:
            continue
        rows.append(
            {
                "status": s["status"] + (f" ({', '.join(flags)})" if flags else ""),
                "old_heading": (s["old"] or {}).get("heading_path") or "",
                "new_heading": (s["new"] or {}).get("heading_path") or "",
                "change": s.get("change") or "",
                "old_summary": s.get("old_summary") or "",
                "new_summary": s.get("new_summary") or "",
            }
        )
    return rows
