"""Front half: raw documents (one partition each) -> sections -> manifest -> labelled splits."""

import functools
from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from summ_assets.core import labels
from summ_assets.core.artifacts import atomic_write_bytes, cached_artifact, stable_json_hash
from summ_assets.core.chunking import TokenCounter, split_markdown
from summ_assets.core.dataset import split_rows, write_splits
from summ_assets.core.documents import DocumentError, discover, read_document
from summ_assets.core.integrity import check_parquet_files
from summ_assets.defs.common import DOCUMENTS, INGEST_GROUP, json_md, spec_version
from summ_assets.defs.resources import SummSettings
from summ_assets.stages.specs import CORPUS_MANIFEST, DOCUMENT_SECTIONS, RAW_DOCUMENTS, SUMMARY_DATASET

GROUP = INGEST_GROUP


def doc_id_for(settings: SummSettings, partition_key: str) -> str:
    doc_id = discover(settings.data_root).get(partition_key)
    if doc_id is None:
        raise DocumentError(
            f"partition {partition_key!r}: its file is gone from {settings.data_root} (deleted after the "
            "partition was created); the new-data sensor drops the partition on its next tick"
        )
    return doc_id


@dg.asset(
    partitions_def=DOCUMENTS,
    group_name=GROUP,
    code_version=spec_version(RAW_DOCUMENTS),
    kinds={"file"},
    description="One document under data/ (raw/, pool/, eval/similar/, eval/new/); data version = content hash.",
)
def raw_documents(context: dg.AssetExecutionContext, settings: SummSettings) -> dg.MaterializeResult:
    profile = RAW_DOCUMENTS.view(settings.get_profile())
    doc_id = doc_id_for(settings, context.partition_key)
    doc = read_document(settings.data_root, doc_id, profile.data.max_file_bytes)
    return dg.MaterializeResult(
        data_version=dg.DataVersion(doc.sha256[:24]),
        metadata={
            "doc_id": doc_id,
            "artifact": dg.MetadataValue.path(str(doc.path)),
            "bytes": doc.n_bytes,
            "sha256": doc.sha256,
            "had_bom": doc.had_bom,
            "newline": repr(doc.newline),
        },
    )


@functools.lru_cache(maxsize=4)
def _counter(tokenizer_dir: str) -> TokenCounter:
    from transformers import AutoTokenizer

    return TokenCounter(AutoTokenizer.from_pretrained(tokenizer_dir))


def sections_path(settings: SummSettings, partition_key: str) -> Path:
    return settings.asset_dir("document_sections") / f"{partition_key}.parquet"


@dg.asset(
    partitions_def=DOCUMENTS,
    group_name=GROUP,
    code_version=spec_version(DOCUMENT_SECTIONS),
    kinds={"parquet"},
    deps=[raw_documents],
    description="Heading-aware, token-budgeted, lossless sections of one document (Parquet).",
)
def document_sections(
    context: dg.AssetExecutionContext, settings: SummSettings, student_base: dict
) -> dg.MaterializeResult:
    import pyarrow as pa
    import pyarrow.parquet as pq

    profile = DOCUMENT_SECTIONS.view(settings.get_profile())
    doc_id = doc_id_for(settings, context.partition_key)
    doc = read_document(settings.data_root, doc_id, profile.data.max_file_bytes)
    chunked = split_markdown(
        doc.text,
        _counter(student_base["path"]),
        doc_id=doc_id,
        max_tokens=profile.data.max_section_tokens,
        min_tokens=profile.data.min_section_tokens,
        source=str(doc.path),
    )
    assert chunked.front_matter_raw + "".join(s.text for s in chunked.sections) == doc.text
    rows = [s.as_row() for s in chunked.sections]
    for r in rows:
        r["doc_sha256"] = doc.sha256
        r["title"] = str(chunked.metadata.get("title", ""))
    table = pa.Table.from_pylist(rows)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    out = sections_path(settings, context.partition_key)
    atomic_write_bytes(out, sink.getvalue().to_pybytes())
    split = sum(1 for s in chunked.sections if s.n_parts > 1)
    return dg.MaterializeResult(
        data_version=dg.DataVersion(stable_json_hash(sorted(r["section_id"] for r in rows))[:24]),
        metadata={
            "doc_id": doc_id,
            "artifact": dg.MetadataValue.path(str(out)),
            "dagster/row_count": len(rows),
            "sections_split_for_budget": split,
            "max_tokens": max((r["token_count"] for r in rows), default=0),
            "front_matter": json_md(chunked.metadata),
            "heading_paths": dg.MetadataValue.md(
                "\n".join(f"- {r['heading_path'] or '(preamble)'}" for r in rows[:50])
            ),
        },
    )


@dg.asset(
    group_name=GROUP,
    code_version=spec_version(CORPUS_MANIFEST),
    kinds={"parquet"},
    deps=[dg.AssetDep(document_sections, partition_mapping=dg.AllPartitionMapping())],
    description="Fan-in of every document's sections; data version = hash of the sorted section ids "
    "(the single source of change for the model half).",
)
def corpus_manifest(context: dg.AssetExecutionContext, settings: SummSettings) -> dg.Output:
    import pyarrow as pa
    import pyarrow.parquet as pq

    keys = sorted(context.instance.get_dynamic_partitions(DOCUMENTS.name))
    tables, missing = [], []
    for k in keys:
        p = sections_path(settings, k)
        if p.exists():
            tables.append(pq.read_table(p))
        else:
            missing.append(k)
    if not tables:
        raise dg.Failure("no document has sections yet: materialize document_sections first")
    if missing:
        context.log.warning(
            f"{len(missing)} document(s) have no sections (failed or not yet run): {missing[:10]}"
        )
    table = pa.concat_tables(tables, promote_options="default").sort_by(
        [("doc_id", "ascending"), ("ordinal", "ascending")]
    )
    ids = table.column("section_id").to_pylist()
    if len(set(ids)) != len(ids):
        raise dg.Failure("duplicate section ids across documents")
    version = stable_json_hash(sorted(ids))[:24]
    target = settings.asset_dir("corpus_manifest") / version
    cached_artifact(
        target,
        lambda tmp: pq.write_table(table, tmp / "manifest.parquet", compression="zstd"),
        log=context.log.info,
        check=lambda folder: check_parquet_files([folder / "manifest.parquet"], folder),
    )
    n_docs = len(set(table.column("doc_id").to_pylist()))
    return dg.Output(
        str(target / "manifest.parquet"),
        data_version=dg.DataVersion(version),
        metadata={
            "artifact": dg.MetadataValue.path(str(target / "manifest.parquet")),
            "dagster/row_count": table.num_rows,
            "documents": n_docs,
            "documents_without_sections": len(missing),
        },
    )


@dg.asset(
    group_name=GROUP,
    code_version=spec_version(SUMMARY_DATASET),
    kinds={"parquet"},
    check_specs=[dg.AssetCheckSpec("labels_valid", asset="summary_dataset")],
    description="Sections joined with data/labels/*.jsonl into stable train/val/test_* splits (+ unlabelled).",
)
def summary_dataset(
    context: dg.AssetExecutionContext, settings: SummSettings, corpus_manifest: str
) -> Iterator[dg.Output | dg.AssetCheckResult]:
    import pyarrow.parquet as pq

    profile = SUMMARY_DATASET.view(settings.get_profile())
    dc = profile.data
    sections = pq.read_table(corpus_manifest).to_pylist()
    rep = labels.load_labels(settings.data_root / "labels", settings.data_root)
    matched = labels.match_labels(rep, sections, {s["doc_id"] for s in sections})
    labels.enforce(rep, dc.label_strictness)
    for p in rep.problems:
        context.log.warning(p)
    by_split = split_rows(sections, matched, dc)
    if dc.max_train is not None:
        del by_split["train"][dc.max_train :]
    version = stable_json_hash(
        {k: [(r["section_id"], r["summary"]) for r in v] for k, v in by_split.items()}
    )[:24]
    target = settings.asset_dir("summary_dataset") / version
    cached_artifact(
        target,
        lambda tmp: write_splits(tmp, by_split),
        log=context.log.info,
        check=lambda folder: check_parquet_files([folder / f"{s}.parquet" for s in by_split], folder),
    )
    counts = {k: len(v) for k, v in by_split.items()}
    context.log.info(f"splits: {counts}")
    yield dg.Output(
        str(target),
        data_version=dg.DataVersion(version),
        metadata={
            "artifact": dg.MetadataValue.path(str(target)),
            **{f"n_{k}": v for k, v in counts.items()},
            "labels": len(rep.labels),
            "labels_hash": labels.labels_hash(settings.data_root / "labels"),
            "labels_matched": len(matched),
        },
    )
    yield dg.AssetCheckResult(
        check_name="labels_valid",
        passed=not rep.problems,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "problems": len(rep.problems),
            **{f"problems_{k}": v for k, v in rep.counts.items()},
            "first_problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in rep.problems[:20]) or "none"),
        },
    )
