"""Teacher labels of unlabelled training-pool sections: cached, scored, filtered, exportable.

- **Cache.** One store folder per (teacher version, decoding, prompt version): Parquet shards of label
  records keyed by `row_key` (section id + a hash of its text). A run labels only the sections the store
  lacks, so a new document labels only its own sections and an edited section is labelled again.
- **Record.** ``summary`` (the teacher's greedy summary after the one-sentence cut), ``raw``,
  ``confidence`` (the teacher's mean log-prob per summary token, teacher-forced), ``n_tokens``, and the
  degeneration ``flags`` (`core.degeneration`) with ``degenerate``.
- **Filter.** A label trains when it is non-empty, not degenerate, and its confidence reaches the
  threshold. The threshold is chosen on val (`choose_threshold`): the teacher labels the val sections
  too (never trained on), and among the most-confident shares in `KEEP_SHARES` the one whose kept val
  labels score the best mean ROUGE-Lsum against the gold summaries wins (ties: the larger share); its
  lowest kept confidence is the threshold. Deterministic: same records, same choice.
- **Export.** `export_jsonl` writes records in the ``data/labels`` format (``doc``, ``heading_path``,
  ``part``, ``summary``) plus ``confidence``, ``label_source`` and ``kept`` (extra keys the label loader
  ignores), so a person can correct a file and move it under ``data/labels`` to make the labels gold.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from summ_assets.core.artifacts import atomic_write_bytes
from summ_assets.core.degeneration import flags

# the same keying and shard reading as the generation store: section id + a hash of the section text
from summ_assets.core.generation_store import read_store, row_key  # noqa: F401  (re-exported)

LABEL_CODE = "teacher-labels-v1"
KEEP_SHARES = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)
_COLUMNS = (
    "row_key",
    "section_id",
    "doc_id",
    "heading_path",
    "part",
    "summary",
    "raw",
    "confidence",
    "n_tokens",
)


def record(row: dict[str, Any], raw: str, summary: str, confidence: float, n_tokens: int) -> dict[str, Any]:
    return {
        "row_key": row_key(row),
        "section_id": row["section_id"],
        "doc_id": row["doc_id"],
        "heading_path": row["heading_path"],
        "part": int(row["part"]),
        "summary": summary,
        "raw": raw,
        "confidence": float(confidence),
        "n_tokens": int(n_tokens),
    }


def with_flags(rec: dict[str, Any]) -> dict[str, Any]:
    """`rec` plus its degeneration flags (computed on read: a new check re-filters without relabelling)."""
    f = flags(rec["summary"]) if rec["summary"].strip() else {}
    return {**rec, "flags": sorted(k for k, v in f.items() if v), "degenerate": any(f.values())}


def write_shard(folder: Path, records: Sequence[dict[str, Any]]) -> Path | None:
    """One new shard with `records`, written atomically (a killed run leaves no half shard)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    if not records:
        return None
    table = pa.Table.from_pylist([{c: r[c] for c in _COLUMNS} for r in records])
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    data = buf.getvalue()
    path = Path(folder) / f"part-{hashlib.sha256(data).hexdigest()[:16]}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)
    return path


def usable(rec: dict[str, Any]) -> bool:
    """Non-empty and not degenerate: `keep` with no confidence bound."""
    return keep(rec, -math.inf) is None


def choose_threshold(
    val: Sequence[tuple[float, float]], shares: Sequence[float] = KEEP_SHARES
) -> dict[str, Any]:
    """`val`: (confidence, ROUGE-Lsum vs gold) of the teacher's usable val labels. Returns
    {"threshold", "kept_share", "candidates": [{"share", "kept", "threshold", "val_rouge_lsum"}]}."""
    ordered = sorted(val, key=lambda x: -x[0])
    candidates = []
    for share in shares:
        n = max(1, math.ceil(share * len(ordered))) if ordered else 0
        kept = ordered[:n]
        threshold = -math.inf if share >= 1.0 or not kept else kept[-1][0]
        mean = sum(r for _, r in kept) / len(kept) if kept else float("nan")
        candidates.append({"share": share, "kept": n, "threshold": threshold, "val_rouge_lsum": mean})
    scored = [c for c in candidates if c["val_rouge_lsum"] == c["val_rouge_lsum"]]
    if not scored:
        return {"threshold": -math.inf, "kept_share": 1.0, "candidates": candidates}
    best = max(scored, key=lambda c: (round(c["val_rouge_lsum"], 9), c["share"]))
    return {"threshold": best["threshold"], "kept_share": best["share"], "candidates": candidates}


def keep(rec: dict[str, Any], threshold: float) -> str | None:
    """None when the label trains, else why not: "empty", "degenerate" or "low_confidence"."""
    if not rec["summary"].strip():
        return "empty"
    if with_flags(rec)["degenerate"]:
        return "degenerate"
    if rec["confidence"] < threshold:
        return "low_confidence"
    return None


def export_jsonl(records: Iterable[dict[str, Any]], path: Path, threshold: float, source: str) -> int:
    """Records as ``data/labels`` lines (see module doc); returns how many were written."""
    lines = []
    for rec in records:
        if not rec["summary"].strip():
            continue  # an empty summary is no label (the loader would refuse the line)
        lines.append(
            json.dumps(
                {
                    "doc": rec["doc_id"],
                    "heading_path": rec["heading_path"],
                    "part": rec["part"],
                    "summary": rec["summary"],
                    "confidence": round(rec["confidence"], 4),
                    "label_source": source,
                    "kept": keep(rec, threshold) is None,
                },
                ensure_ascii=False,
            )
        )
    atomic_write_bytes(Path(path), ("\n".join(lines) + "\n" if lines else "").encode())
    return len(lines)
