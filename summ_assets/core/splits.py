"""Stable split assignment that keeps decisions apart from claims.

- ``val`` (every decision: sweeps, epoch selection, early stopping, gates) is made of whole held-out
  *documents* of the training pool (``raw/``): the documents ranked lowest by a stable hash of their id,
  taken in rank order until they hold at least ``val_min_examples`` labelled sections (at most
  ``val_max_doc_fraction`` of the pool's documents). Nothing of a val document trains anything: its
  unlabelled sections go to ``heldout_unlabelled``, never to seq-KD. A rank, not a hash threshold, so
  the count is predictable; a new document can enter val only by ranking below the current ones.
- The originals of the ``test_similar`` documents (``raw/<name>`` for ``eval/similar/<name>``) always
  stay in train: "similar to training material" must stay true.
- ``test_seen`` = held-out sections of the *training* documents, by a hash of (doc id, heading path), so
  every part of a section that the chunker split goes to the same side.
- documents under ``eval/similar/`` -> ``test_similar``; under ``eval/new/`` -> ``test_new``.
- ``test_*`` sets are never used for a decision; the claims come from them.
- sections without a reference summary -> ``unlabelled`` (pseudo-label candidates), except those of
  val and eval documents -> ``heldout_unlabelled``.
- with ``val_max_sections_per_document``, a val document gives val only that many labelled sections
  (lowest `section_key` first); the rest -> ``val_spare`` (never trained on, never scored): power
  comes from documents, so val spreads a fixed generation budget over more of them.

The hashes are of ids and heading paths, never of text, so editing a section keeps it in its split.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping

SPLITS = (
    "train",
    "val",
    "test_seen",
    "test_similar",
    "test_new",
    "unlabelled",
    "heldout_unlabelled",
    "val_spare",
)
EVAL_SETS = ("val", "test_seen", "test_similar", "test_new")
TEST_SETS = ("test_seen", "test_similar", "test_new")
# what each evaluation set is, for the report: val drives decisions, the test sets carry the claims
SET_ROLES = {
    "val": "used for selection (sweeps, epoch choice, early stopping, gates): not a claim",
    "test_seen": "held-out sections of training documents (never used for a decision)",
    "test_similar": "reworded variants of training documents (never used for a decision)",
    "test_new": "new documents and formats (never used for a decision)",
}


def split_key(doc_id: str, heading_path: str, part: int) -> str:
    return hashlib.sha256(f"{doc_id}\x00{heading_path}\x00{part}".encode()).hexdigest()


def section_key(doc_id: str, heading_path: str) -> str:
    """Hash of a section without its part number: all parts of a split section share it."""
    return hashlib.sha256(f"{doc_id}\x00{heading_path}".encode()).hexdigest()


def document_rank_key(doc_id: str) -> str:
    return hashlib.sha256(f"val-document\x00{doc_id}".encode()).hexdigest()


def unit_interval(key: str) -> float:
    return int(key[:15], 16) / float(16**15)


EVAL_PREFIXES = ("eval/similar/", "eval/new/")
POOL_PREFIX = "raw/"


def is_eval_document(doc_id: str) -> bool:
    """Whether the document is test material (``data/eval/...``): it never trains anything."""
    return doc_id.startswith(EVAL_PREFIXES)


def similar_originals(doc_ids: Iterable[str]) -> set[str]:
    """The training documents that `eval/similar/` documents reword: ``raw/<name>`` for
    ``eval/similar/<name>`` (same file name)."""
    return {POOL_PREFIX + d[len(EVAL_PREFIXES[0]) :] for d in doc_ids if d.startswith(EVAL_PREFIXES[0])}


def choose_val_documents(
    labelled_per_doc: Mapping[str, int],
    min_examples: int,
    max_doc_fraction: float,
    min_documents: int = 1,
    per_document: int | None = None,
) -> list[str]:
    """The val documents: training-pool documents (not eval material, not an original of a
    test_similar document, with at least one labelled section) in order of `document_rank_key`, until
    they hold `min_examples` labelled sections (each counting at most `per_document`) and number at
    least `min_documents`, or reach ``floor(max_doc_fraction * labelled pool)`` documents (at least one
    when the labelled pool has two or more)."""
    originals = similar_originals(labelled_per_doc)
    pool = sorted(
        (d for d, n in labelled_per_doc.items() if n > 0 and not is_eval_document(d) and d not in originals),
        key=document_rank_key,
    )
    # documents without labels (pool/ pages) can never be val: they do not count towards the share
    n_pool = sum(1 for d, n in labelled_per_doc.items() if n > 0 and not is_eval_document(d))
    cap = max(1, math.floor(max_doc_fraction * n_pool)) if n_pool >= 2 else 0
    chosen: list[str] = []
    total = 0
    for d in pool:
        if (total >= min_examples and len(chosen) >= min_documents) or len(chosen) >= cap:
            break
        chosen.append(d)
        n = labelled_per_doc[d]
        total += n if per_document is None else min(n, per_document)
    return chosen


def assign_split(
    doc_id: str,
    heading_path: str,
    labelled: bool,
    val_documents: Iterable[str],
    test_seen_fraction: float,
) -> str:
    held_out = doc_id in val_documents or is_eval_document(doc_id)
    if not labelled:
        return "heldout_unlabelled" if held_out else "unlabelled"
    if doc_id.startswith(EVAL_PREFIXES[0]):
        return "test_similar"
    if doc_id.startswith(EVAL_PREFIXES[1]):
        return "test_new"
    if doc_id in val_documents:
        return "val"
    if unit_interval(section_key(doc_id, heading_path)) < test_seen_fraction:
        return "test_seen"
    return "train"
