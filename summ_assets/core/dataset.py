"""The labelled dataset between the chunker and the models: one row per section, in stable splits.

`split_rows` assigns every section to its split (`core.splits`), `write_splits` writes one Parquet
file per split into the `summary_dataset` folder, and `read_split` reads one back; the row's fields are
`SplitRow`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypedDict

from summ_assets.core.splits import SPLITS, assign_split, split_key


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
    """Every section in its stable split (labelled or `unlabelled`), each split sorted by split key,
    uncapped. `matched`: section_id -> label (`core.labels.match_labels`); `dc`: the `DataConfig`."""
    by_split: dict[str, list[SplitRow]] = {s: [] for s in SPLITS}
    for s in sections:
        lab = matched.get(s["section_id"])
        split = assign_split(
            s["doc_id"], s["heading_path"], s["part"], lab is not None, dc.val_fraction, dc.test_seen_fraction
        )
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
    """Rows of one split of a `summary_dataset` folder."""
    import pyarrow.parquet as pq

    return pq.read_table(Path(dataset_dir) / f"{split}.parquet").to_pylist()  # type: ignore[return-value]
