"""The comparison assets: `section_index` (the training pool's sections, for ``compare --against
corpus``) and `document_changes[doc]` (what changed in a document since its previous version).

Declaration only: the bodies are `summ_assets.stages.comparison.section_index_stage` and
`summ_assets.serving.history.document_changes_stage`.
"""

from typing import Any

import dagster as dg

from summ_assets.core.artifacts import stable_json_hash
from summ_assets.core.documents import read_document
from summ_assets.defs.common import DOCUMENTS, INGEST_GROUP, spec_version
from summ_assets.defs.evaluation import pointer_path
from summ_assets.defs.ingest import doc_id_for, raw_documents
from summ_assets.defs.resources import SummSettings
from summ_assets.defs.stage_io import previous_artifact
from summ_assets.serving.history import change_rows, document_changes_stage
from summ_assets.stages.comparison import section_index_stage
from summ_assets.stages.specs import DOCUMENT_CHANGES, SECTION_INDEX

GROUP = INGEST_GROUP
TABLE_COLUMNS = ("status", "old_heading", "new_heading", "change", "old_summary", "new_summary")


@dg.asset(
    group_name=GROUP,
    code_version=spec_version(SECTION_INDEX),
    kinds={"parquet"},
    description="TF-IDF index (Kiwi morphemes) of the training pool's sections (data/raw, not data/eval), "
    "updated incrementally: `summ-assets compare NEW --against corpus` finds the sections a page repeats.",
)
def section_index(
    context: dg.AssetExecutionContext, settings: SummSettings, corpus_manifest: str
) -> dg.Output:
    SECTION_INDEX.view(settings.get_profile())  # declares (and checks) that no setting is read
    res = section_index_stage(
        corpus_manifest, settings.asset_dir("section_index"), previous_artifact(context), log=context.log.info
    )
    return dg.Output(
        str(res.path),
        data_version=dg.DataVersion(res.version),
        metadata={
            "artifact": dg.MetadataValue.path(str(res.path)),
            "documents": res.documents,
            "dagster/row_count": res.sections,
            "sections_tokenized_now": res.tokenized,
            "sections_reused": res.reused,
        },
    )


def _last_metadata(context: dg.AssetExecutionContext) -> dict[str, Any] | None:
    """This partition's last materialization's metadata (None before the first)."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=context.asset_key, asset_partitions=[context.partition_key]), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        return None
    return {k: getattr(v, "value", v) for k, v in records[0].asset_materialization.metadata.items()}


def _promoted_student(settings: SummSettings):
    """A factory of the promoted student's `Summarizer`, or None before any promotion."""
    from summ_assets.serving.reload import pointer_target

    path = pointer_target(pointer_path(settings))
    if not path:
        return None

    def load():
        from summ_assets.serving import Summarizer

        return Summarizer(path, profile=settings.get_profile())

    return load


@dg.asset(
    partitions_def=DOCUMENTS,
    group_name=GROUP,
    code_version=spec_version(DOCUMENT_CHANGES),
    kinds={"json"},
    deps=[raw_documents],
    description="What changed in this document since its previous version: sections aligned, counts, one "
    "row per changed section with both summaries from the promoted student (the alignment alone before any "
    "promotion). A first version has nothing to compare.",
)
def document_changes(context: dg.AssetExecutionContext, settings: SummSettings) -> dg.MaterializeResult:
    profile = DOCUMENT_CHANGES.view(settings.get_profile())
    doc_id = doc_id_for(settings, context.partition_key)
    doc = read_document(settings.data_root, doc_id, profile.data.max_file_bytes)
    root = settings.asset_dir("document_changes") / context.partition_key
    res = document_changes_stage(
        doc_id,
        doc.text,
        doc.sha256,
        root,
        _last_metadata(context),
        summarizer_factory=_promoted_student(settings),
        cache_dir=settings.asset_dir("summary_cache"),
        log=context.log.info,
    )
    metadata: dict[str, Any] = {
        "doc_id": doc_id,
        "sha256": res.sha256,
        "previous_sha256": res.previous_sha256 or "",
        "comparison": res.note,
    }
    if res.result is not None:
        rows = change_rows(res.result)
        metadata.update(
            {
                "artifact": dg.MetadataValue.path(str(res.path)),
                **{f"n_{k}": v for k, v in res.result["counts"].items()},
                "summarized_by": (res.model or {}).get("model") or "nobody (no promoted student)",
                "summaries_generated": res.result["summaries"]["generated"],
                "changes": dg.MetadataValue.table(
                    records=[dg.TableRecord({c: r[c] for c in TABLE_COLUMNS}) for r in rows],
                    schema=dg.TableSchema(columns=[dg.TableColumn(c, "string") for c in TABLE_COLUMNS]),
                ),
            }
        )
    version = stable_json_hash([res.previous_sha256, res.sha256, (res.model or {}).get("files")])[:24]
    return dg.MaterializeResult(data_version=dg.DataVersion(version), metadata=metadata)
