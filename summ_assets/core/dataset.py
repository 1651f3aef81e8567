"""The labelled dataset between the chunker and the models: one row per section, in stable splits.

`split_rows` assigns every section to its split (`core.splits`), `write_splits` writes one Parquet
file per split into the `summary_dataset` folder, and `read_split` reads one back; the row's fields are
`SplitRow`.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any, TypedDict

from summ_assets.core import env
from summ_assets.core.splits import SPLITS, assign_split, choose_val_documents, section_key, split_key


class SplitRow(TypedDict):
    section_id: str
    doc_id: str
    heading_path: str
    part: int
    text: str
    summary: str  # "" for an unlabelled section
    label_source: str  # "file:line" of the label, "" when unlabelled
    split_key: str


_STRING_FIELDS = ("section_id", "doc_id", "heading_path")


def split_rows(sections: list[dict[str, Any]], matched: dict[str, Any], dc: Any) -> dict[str, list[SplitRow]]:
    """Every section in its stable split (`core.splits`), each split sorted by split key, uncapped.
    `matched`: section_id -> label (`core.labels.match_labels`); `dc`: the `DataConfig`."""
    by_split: dict[str, list[SplitRow]] = {s: [] for s in SPLITS}
    labelled = Counter(s["doc_id"] for s in sections if s["section_id"] in matched)
    for s in sections:
        labelled.setdefault(s["doc_id"], 0)
    per_doc = dc.val_max_sections_per_document
    val_docs = set(
        choose_val_documents(
            labelled, dc.val_min_examples, dc.val_max_doc_fraction, dc.val_min_documents, per_doc
        )
    )
    # the labelled sections each val document gives val: all, or its first `per_doc` by section key
    val_sections: dict[str, set[str]] = {}
    for s in sections:
        if s["doc_id"] in val_docs and s["section_id"] in matched:
            val_sections.setdefault(s["doc_id"], set()).add(s["heading_path"])
    if per_doc is not None:
        val_sections = {
            d: set(sorted(paths, key=lambda h, d=d: section_key(d, h))[:per_doc])
            for d, paths in val_sections.items()
        }
    for s in sections:
        lab = matched.get(s["section_id"])
        split = assign_split(s["doc_id"], s["heading_path"], lab is not None, val_docs, dc.test_seen_fraction)
        if split == "val" and s["heading_path"] not in val_sections[s["doc_id"]]:
            split = "val_spare"
        by_split[split].append(
            SplitRow(
                section_id=s["section_id"],
                doc_id=s["doc_id"],
                heading_path=s["heading_path"],
                part=s["part"],
                text=s["text"],
                summary=lab.summary if lab else "",
                label_source=f"{lab.file}:{lab.line}" if lab else "",
                split_key=split_key(s["doc_id"], s["heading_path"], s["part"]),
            )
        )
    for rows in by_split.values():
        rows.sort(key=lambda r: r["split_key"])
    return by_split


def write_splits(folder: Path, by_split: dict[str, list[SplitRow]]) -> None:
    """One zstd Parquet file per split (`<split>.parquet`) with a fixed schema (empty splits too)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [(n, pa.string()) for n in _STRING_FIELDS]
        + [
            ("part", pa.int64()),
            ("text", pa.string()),
            ("summary", pa.string()),
            ("label_source", pa.string()),
            ("split_key", pa.string()),
        ]
    )
    for split, rows in by_split.items():
        table = pa.Table.from_pylist(list(rows), schema=schema)
        pq.write_table(table, Path(folder) / f"{split}.parquet", compression="zstd")


def read_split(dataset_dir: str | Path, split: str) -> list[SplitRow]:
    """Rows of one split of a `summary_dataset` folder.

    With ``SUMM_SPLIT_READ_LOG`` set, every read appends ``{"split", "caller", "pid"}`` to that file
    (the audit a test uses to prove that no test set reaches a sweep, selection or gate path)."""
    import pyarrow.parquet as pq

    _log_read(split)
    return pq.read_table(Path(dataset_dir) / f"{split}.parquet").to_pylist()  # type: ignore[return-value]


def _log_read(split: str) -> None:
    log = env.get(env.SPLIT_READ_LOG)
    if not log:
        return
    frames, f = [], sys._getframe(2)
    while f is not None and len(frames) < 12:
        frames.append(f"{f.f_globals.get('__name__', '?')}.{f.f_code.co_name}")
        f = f.f_back
    line = json.dumps({"split": split, "caller": frames[0], "stack": frames, "pid": os.getpid()})
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
