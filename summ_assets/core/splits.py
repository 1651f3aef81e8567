"""Stable split assignment: a pure function of a stable key, so adding documents never moves an
existing example to another split.

- documents under ``eval/similar/`` -> ``test_similar``; under ``eval/new/`` -> ``test_new``;
- sections of ``raw/`` documents -> ``train`` / ``val`` / ``test_seen`` by a hash of
  (doc id, heading path, part) — not of the text, so editing a section keeps it in its split;
- sections without a reference summary -> ``unlabelled`` (pseudo-label candidates).
"""

from __future__ import annotations

import hashlib

SPLITS = ("train", "val", "test_seen", "test_similar", "test_new", "unlabelled")
EVAL_SETS = ("val", "test_seen", "test_similar", "test_new")


def split_key(doc_id: str, heading_path: str, part: int) -> str:
    return hashlib.sha256(f"{doc_id}\x00{heading_path}\x00{part}".encode()).hexdigest()


def unit_interval(key: str) -> float:
    return int(key[:15], 16) / float(16**15)


EVAL_PREFIXES = ("eval/similar/", "eval/new/")


def is_eval_document(doc_id: str) -> bool:
    """Whether the document is test material (``data/eval/...``): it never trains anything."""
    return doc_id.startswith(EVAL_PREFIXES)


def assign_split(
    doc_id: str, heading_path: str, part: int, labelled: bool, val_fraction: float, test_seen_fraction: float
) -> str:
    if not labelled:
        return "unlabelled"
    if doc_id.startswith(EVAL_PREFIXES[0]):
        return "test_similar"
    if doc_id.startswith(EVAL_PREFIXES[1]):
        return "test_new"
    u = unit_interval(split_key(doc_id, heading_path, part))
    if u < val_fraction:
        return "val"
    if u < val_fraction + test_seen_fraction:
        return "test_seen"
    return "train"
