"""Partitions follow the files: one plan of what changed under data/, shared by the new-data sensor and
`summ-assets refresh` (so both add, drop and re-ingest exactly the same documents)."""

from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from summ_assets.core.artifacts import sha256_file
from summ_assets.core.documents import discover
from summ_assets.defs.common import DOCUMENTS
from summ_assets.defs.staleness import latest_data_version_record


@dataclass(frozen=True)
class DocumentChange:
    partition: str
    doc_id: str
    sha: str  # the file's content hash (24 hex), what raw_documents will record as its data version
    reason: str  # "new document" | "file changed"
    since: int  # storage id of the data version the file differs from (0: never ingested)


@dataclass(frozen=True)
class PartitionSync:
    current: dict[str, str]  # partition key -> doc id of every document file now
    add: list[str] = field(default_factory=list)  # partitions to create (new files)
    drop: list[str] = field(default_factory=list)  # partitions to delete (files gone; artifacts kept)
    changed: list[DocumentChange] = field(default_factory=list)  # to ingest, sorted by doc id

    def dynamic_partition_requests(self) -> list:
        """The add/delete requests a sensor returns (the daemon applies them)."""
        out = []
        if self.add:
            out.append(DOCUMENTS.build_add_request(self.add))
        if self.drop:
            out.append(DOCUMENTS.build_delete_request(self.drop))
        return out

    def apply(self, instance: dg.DagsterInstance) -> None:
        """Create and delete the partitions now (the CLI path, no daemon)."""
        if self.add:
            instance.add_dynamic_partitions(DOCUMENTS.name, self.add)
        for k in self.drop:
            instance.delete_dynamic_partition(DOCUMENTS.name, k)


def plan_partitions(
    instance: dg.DagsterInstance, data_root: Path, pool_documents: int | None = None
) -> PartitionSync:
    """Which partitions to add and drop, and which documents are new or changed (file hash vs the
    data version `raw_documents` last recorded for the partition). `pool_documents` is the profile's
    cap on ``pool/`` documents: those past it get no partition (and lose one they had)."""
    current = discover(data_root, pool_documents=pool_documents)
    known = set(instance.get_dynamic_partitions(DOCUMENTS.name))
    changed = []
    for pk, doc_id in sorted(current.items(), key=lambda kv: kv[1]):
        path = Path(data_root) / doc_id
        if not path.is_file():  # vanished between discover() and now
            continue
        sha = sha256_file(path)[:24]
        version, since = latest_data_version_record(instance, "raw_documents", pk)
        if version != sha:
            reason = "new document" if version is None else "file changed"
            changed.append(DocumentChange(pk, doc_id, sha, reason, since))
    return PartitionSync(
        current=current,
        add=sorted(set(current) - known),
        drop=sorted(known - set(current)),
        changed=changed,
    )
