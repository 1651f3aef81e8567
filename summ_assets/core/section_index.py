"""Which existing sections a new page repeats: a text index over the corpus's sections.

Plain Python (no Dagster, no model). Used by ``summ-assets compare NEW --against PATH|corpus`` and by
the `section_index` asset, which keeps the index of the training pool (``data/raw``) up to date.

**Entries.** One per heading-level section (`core.alignment.Unit`: the parts the token budget cut are
merged back), holding its document, heading path, character span, visible body and its Kiwi
morphemes (`metrics.get_tokenizer("kiwi")`, the tokenizer of the Korean-correct ROUGE: lowercased,
punctuation dropped) of the visible title and body. Tokenizing is the only costly step, so an index is
built *incrementally*: an entry whose title and body are unchanged (same `body_sha`) reuses the tokens of
the previous index.

**Scoring.** TF-IDF (scikit-learn's `TfidfVectorizer` on the morphemes, IDF from the indexed corpus,
l2-normalised) and cosine similarity: 1.0 for the same words in any order, near 0 for unrelated text.
Particles and endings occur in every section, so their low IDF keeps unrelated Korean sections apart.

**Status** of the best match of a query section: ``duplicate`` (score >= DUPLICATE_MIN: the same text,
up to small edits), ``overlapping`` (score >= OVERLAP_MIN: a reworded or partly shared section), ``new``
(below). The thresholds are set on crafted pairs from ``data/raw`` only, with
``benchmarks/tune_compare.py --against`` (never on a test set): leave-one-document-out scores of real
sections (a section whose document is not indexed is new) against edited copies of them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from summ_assets.core.alignment import Unit, split_units

INDEX_VERSION = "section-index-v1"

# ---- thresholds ---------------------------------------------------------------------------------
# From `benchmarks/tune_compare.py --against` (data/raw only: 477 sections of 47 documents, 368 queries,
# seed 0):
#   kind                               score min / p5 / p50 / p95 / max    duplicate / overlapping / new
#   new (own document left out)        0.09 / 0.17 / 0.24 / 0.38 / 0.52       0.0 % /  1.9 % / 98.1 %
#   verbatim                           0.96 / 1.00 / 1.00 / 1.00 / 1.00     100.0 % /  0.0 % /  0.0 %
#   1 sentence dropped                 0.76 / 0.83 / 0.93 / 0.98 / 1.00      69.3 % / 30.7 % /  0.0 %
#   1 sentence replaced                0.61 / 0.72 / 0.86 / 0.94 / 0.98      20.4 % / 79.6 % /  0.0 %
#   half the sentences replaced        0.40 / 0.49 / 0.67 / 0.84 / 0.97       1.4 % / 97.0 % /  1.6 %
#   all but one sentence replaced      0.27 / 0.33 / 0.45 / 0.59 / 0.74       0.0 % / 50.8 % / 49.2 %
# OVERLAP_MIN sits above the p95 of new sections (0.38) and below the p5 of half-replaced ones (0.49);
# DUPLICATE_MIN keeps a verbatim copy (min 0.96) and most one-sentence drops a duplicate.
DUPLICATE_MIN = 0.90
OVERLAP_MIN = 0.45
STATUSES = ("duplicate", "overlapping", "new")
COLUMNS = ("doc_id", "heading_path", "char_start", "char_end", "body_sha", "text", "tokens")


class IndexError_(ValueError):
    """A section index that cannot be read or used (names the file)."""


def morphemes(text: str) -> list[str]:
    """Kiwi morphemes of `text` (lowercased, punctuation dropped): the index's terms."""
    from summ_assets.core.metrics import get_tokenizer

    return get_tokenizer("kiwi").tokenize(text)


def body_sha(unit: Unit) -> str:
    """Identity of a unit's indexed content: its visible title and normalised body."""
    return hashlib.sha256(f"{unit.title}\0{unit.key}".encode()).hexdigest()[:20]


def unit_terms(unit: Unit) -> list[str]:
    return morphemes(f"{unit.title}\n{unit.clean}")


def status_of(score: float) -> str:
    if score >= DUPLICATE_MIN:
        return "duplicate"
    if score >= OVERLAP_MIN:
        return "overlapping"
    return "new"


@dataclass(frozen=True)
class Match:
    doc_id: str
    heading_path: str
    char_start: int
    char_end: int
    score: float
    status: str
    text: str

    def to_json(self) -> dict[str, Any]:
        return {
            "doc_id": self.doc_id,
            "heading_path": self.heading_path,
            "char_start": self.char_start,
            "char_end": self.char_end,
            "score": round(self.score, 4),
            "status": self.status,
        }


def entries_of(
    doc_id: str, units: Iterable[Unit], reuse: dict[str, list[str]] | None = None
) -> tuple[list[dict[str, Any]], int]:
    """Index rows of one document's units (sections with no visible text are left out) and how many
    were tokenized now (the rest reused the tokens in `reuse`, keyed by `body_sha`)."""
    reuse = reuse or {}
    rows, tokenized = [], 0
    for u in units:
        if not (u.title or u.clean).strip():
            continue
        sha = body_sha(u)
        tokens = reuse.get(sha)
        if tokens is None:
            tokens = unit_terms(u)
            tokenized += 1
        rows.append(
            {
                "doc_id": doc_id,
                "heading_path": u.heading_path,
                "char_start": u.char_start,
                "char_end": u.char_end,
                "body_sha": sha,
                "text": u.clean,
                "tokens": list(tokens),
            }
        )
    return rows, tokenized


class SectionIndex:
    """TF-IDF over the entries' morphemes; `query` finds each section's closest entries."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self._vectorizer: Any = None
        self._matrix: Any = None

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def documents(self) -> list[str]:
        return sorted({r["doc_id"] for r in self.rows})

    # -- build / persist ---------------------------------------------------------------------------

    @classmethod
    def from_texts(
        cls, docs: Iterable[tuple[str, str]], previous: SectionIndex | None = None
    ) -> tuple[SectionIndex, int]:
        """Index `(doc_id, markdown)` pairs; the tokens of unchanged sections come from `previous`.
        Returns the index and the number of sections tokenized now."""
        reuse = previous.tokens_by_sha() if previous is not None else {}
        rows: list[dict[str, Any]] = []
        tokenized = 0
        for doc_id, text in docs:
            units, _ = split_units(text, source=doc_id)
            got, n = entries_of(doc_id, units, reuse)
            rows += got
            tokenized += n
        return cls(rows), tokenized

    @classmethod
    def from_folder(cls, folder: str | Path, read: Callable[[Path], str]) -> SectionIndex:
        """An index of every ``*.md`` file under `folder` (recursively; ids relative to it), each read
        with `read` (which raises a clear error for a bad file)."""
        root = Path(folder)
        if not root.is_dir():
            raise IndexError_(
                f"--against {folder}: not a folder (give a folder of Markdown files, or 'corpus')"
            )
        files = sorted(p for p in root.rglob("*.md") if p.is_file())
        if not files:
            raise IndexError_(f"--against {folder}: no *.md file under it")
        docs = [(p.relative_to(root).as_posix(), read(p)) for p in files]
        return cls.from_texts(docs)[0]

    def tokens_by_sha(self) -> dict[str, list[str]]:
        return {r["body_sha"]: list(r["tokens"]) for r in self.rows}

    def write(self, path: str | Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(self.rows, schema=_schema())
        pq.write_table(table, str(path), compression="zstd")

    @classmethod
    def read(cls, path: str | Path) -> SectionIndex:
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(str(path))
        except (OSError, ValueError) as exc:
            raise IndexError_(f"{path}: not a readable section index ({exc})") from exc
        missing = [c for c in COLUMNS if c not in table.column_names]
        if missing:
            raise IndexError_(f"{path}: not a section index (columns {missing} missing)")
        return cls(table.to_pylist())

    # -- query -------------------------------------------------------------------------------------

    def _fit(self) -> None:
        if self._vectorizer is not None:
            return
        from sklearn.feature_extraction.text import TfidfVectorizer

        if not self.rows:
            raise IndexError_("the section index is empty (no document with text)")
        self._vectorizer = TfidfVectorizer(analyzer=_identity, lowercase=False)
        self._matrix = self._vectorizer.fit_transform([r["tokens"] for r in self.rows])

    def scores(self, terms: list[list[str]]) -> Any:
        """Cosine similarities, one row per query, one column per entry (a dense numpy array)."""
        self._fit()
        q = self._vectorizer.transform(terms)
        return (q @ self._matrix.T).toarray()

    def query(self, units: list[Unit], k: int = 3, exclude_doc: str | None = None) -> list[list[Match]]:
        """The `k` closest entries of each unit (best first); `exclude_doc` leaves one document out."""
        import numpy as np

        if not units:
            return []
        sims = self.scores([unit_terms(u) for u in units])
        if exclude_doc is not None:
            sims[:, [i for i, r in enumerate(self.rows) if r["doc_id"] == exclude_doc]] = -1.0
        out = []
        for row in sims:
            best = np.argsort(-row, kind="stable")[:k]
            out.append(
                [
                    Match(
                        doc_id=self.rows[i]["doc_id"],
                        heading_path=self.rows[i]["heading_path"],
                        char_start=int(self.rows[i]["char_start"]),
                        char_end=int(self.rows[i]["char_end"]),
                        score=float(max(row[i], 0.0)),
                        status=status_of(float(row[i])),
                        text=self.rows[i]["text"],
                    )
                    for i in best
                    if row[i] >= 0.0
                ]
            )
        return out


def _identity(tokens: list[str]) -> list[str]:
    return tokens


def _schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("doc_id", pa.string()),
            ("heading_path", pa.string()),
            ("char_start", pa.int64()),
            ("char_end", pa.int64()),
            ("body_sha", pa.string()),
            ("text", pa.string()),
            ("tokens", pa.list_(pa.string())),
        ]
    )


def against(
    new_text: str, index: SectionIndex, k: int = 3, source: str = "new", exclude_doc: str | None = None
) -> dict[str, Any]:
    """Each section of `new_text` with its `k` closest indexed sections and its status (that of the
    best match): JSON with ``sections`` in document order and ``counts`` by status."""
    units, _ = split_units(new_text, source=source)
    matches = index.query(units, k, exclude_doc=exclude_doc)
    sections, counts = [], dict.fromkeys(STATUSES, 0)
    for u, ms in zip(units, matches, strict=True):
        status = ms[0].status if ms else "new"
        counts[status] += 1
        sections.append({"new": u.span(), "status": status, "matches": [m.to_json() for m in ms]})
    return {
        "sections": sections,
        "counts": counts,
        "index": {"documents": len(index.documents), "sections": len(index)},
        "thresholds": {"duplicate": DUPLICATE_MIN, "overlapping": OVERLAP_MIN},
    }


def recall_at(
    section_map: str | Path, data_root: str | Path, index: SectionIndex, ks: tuple[int, ...] = (1, 3)
) -> dict[str, Any]:
    """Recall@k of a hand-checked section map (JSON lines: ``variant_doc``, ``variant_heading_path``,
    ``original_doc``, ``original_heading_path``; paths relative to `data_root`): the share of variant
    sections whose original is among the index's k closest sections. Rows without an original (new
    content) are not counted."""
    import json

    rows = [
        json.loads(line)
        for line in Path(section_map).read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    rows = [r for r in rows if r.get("original_heading_path") is not None]
    units: dict[str, dict[str, Unit]] = {}
    hits = dict.fromkeys(ks, 0)
    misses = []
    for r in rows:
        doc = r["variant_doc"]
        if doc not in units:
            text = (Path(data_root) / doc).read_text(encoding="utf-8")
            units[doc] = {u.heading_path: u for u in split_units(text, source=doc)[0]}
        found = index.query([units[doc][r["variant_heading_path"]]], k=max(ks))[0]
        ranked = [(m.doc_id, m.heading_path) for m in found]
        want = (r["original_doc"], r["original_heading_path"])
        for k in ks:
            hits[k] += want in ranked[:k]
        if ranked[:1] != [want]:
            misses.append({"variant": f"{doc}: {r['variant_heading_path']}", "top": ranked[:1]})
    n = len(rows)
    return {
        "sections": n,
        "documents": len(units),
        **{f"recall@{k}": (hits[k] / n if n else 0.0) for k in ks},
        "misses_at_1": misses,
    }
