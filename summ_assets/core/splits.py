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

The hashes are of ids and heading paths, never of text, so editing a section keeps it in its split.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping

SPLITS = ("train", "val", "test_seen", "test_similar", "test_new", "unlabelled", "heldout_unlabelled")
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
    labelled_per_doc: Mapping[str, int], min_examples: int, max_doc_fraction: float
) -> list[str]:
    """The val documents: training-pool documents (not eval material, not an original of a
    test_similar document, with at least one labelled section) in order of `document_rank_key`, until
    they hold `min_examples` labelled sections or reach ``floor(max_doc_fraction * pool)`` documents
    (at least one when the pool has two or more)."""
    originals = similar_originals(labelled_per_doc)
    pool = sorted(
        (d for d, n in labelled_per_doc.items() if n > 0 and not is_eval_document(d) and d not in originals),
        key=document_rank_key,
    )
    n_pool = sum(1 for d in labelled_per_doc if not is_eval_document(d))
    cap = max(1, math.floor(max_doc_fraction * n_pool)) if n_pool >= 2 else 0
    chosen: list[str] = []
    total = 0
    for d in pool:
        if total >= min_examples or len(chosen) >= cap:
            break
        chosen.append(d)
        total += labelled_per_doc[d]
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
