"""Body of the `section_index` asset (plain Python, no Dagster): the text index
(`core.section_index`) of the training pool's sections (documents under ``raw/``; never ``eval/``, or
every test document would find itself), built incrementally: sections whose title and body did not
change reuse the previous index's tokens. (`document_changes` is `serving.history`: it summarizes.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from summ_assets.core.artifacts import cached_artifact, stable_json_hash
from summ_assets.core.integrity import check_parquet_files
from summ_assets.core.section_index import INDEX_VERSION, SectionIndex, entries_of

TRAINING_POOL = "raw/"
INDEX_FILE = "index.parquet"


# ---- section index --------------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexResult:
    path: Path
    version: str
    documents: int
    sections: int
    tokenized: int
    reused: int


def section_index_stage(
    manifest_path: str | Path,
    out_root: Path,
    previous_path: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> IndexResult:
    """Index the sections of the training pool's documents in the manifest (`corpus_manifest`'s
    Parquet). `previous_path` is the last index (its tokens are reused for unchanged sections)."""
    import pyarrow.parquet as pq

    from summ_assets.core.alignment import units_of
    from summ_assets.core.chunking import Section

    table = pq.read_table(str(manifest_path))
    by_doc: dict[str, list[dict[str, Any]]] = {}
    for row in table.to_pylist():
        if row["doc_id"].startswith(TRAINING_POOL):
            by_doc.setdefault(row["doc_id"], []).append(row)
    version = stable_json_hash(
        [INDEX_VERSION, sorted((d, r["section_id"]) for d, rows in by_doc.items() for r in rows)]
    )[:24]
    target = out_root / version
    fields = set(Section.__dataclass_fields__)
    counts = {"tokenized": 0, "reused": 0, "sections": 0}

    def build(tmp: Path) -> None:
        previous = None
        if previous_path and Path(previous_path).is_file():
            try:
                previous = SectionIndex.read(previous_path)
            except ValueError as exc:  # unreadable: rebuilt from scratch, said in the log
                log(f"previous index not reused: {exc}")
        reuse = previous.tokens_by_sha() if previous is not None else {}
        rows: list[dict[str, Any]] = []
        for doc_id in sorted(by_doc):
            parts = sorted(by_doc[doc_id], key=lambda r: r["ordinal"])
            sections = [Section(**{k: v for k, v in r.items() if k in fields}) for r in parts]
            # the document's text from its lossless sections (offsets count from the file's start)
            start = sections[0].char_start
            text = "\0" * start + "".join(s.text for s in sections)
            got, n = entries_of(doc_id, units_of(text, sections), reuse)
            rows += got
            counts["tokenized"] += n
        counts["sections"] = len(rows)
        counts["reused"] = len(rows) - counts["tokenized"]
        SectionIndex(rows).write(tmp / INDEX_FILE)

    built = cached_artifact(
        target, build, log=log, check=lambda folder: check_parquet_files([folder / INDEX_FILE], folder)
    )
    if not built:  # the finished folder of an earlier run: nothing tokenized now
        counts["sections"] = pq.read_metadata(str(target / INDEX_FILE)).num_rows
        counts["reused"] = counts["sections"]
    return IndexResult(
        path=target / INDEX_FILE,
        version=version,
        documents=len(by_doc),
        sections=counts["sections"],
        tokenized=counts["tokenized"],
        reused=counts["reused"],
    )
