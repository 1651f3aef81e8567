"""Compare two versions of a document: aligned sections, a one-line change and the student's summary of
each version of every section that is not unchanged (`summ-assets compare`, ``POST /compare``).

- `compare_documents(old_text, new_text, summarizer | None, cache)`: the JSON answer
  ``{"sections": [{"status", "heading_changed", "moved", "old": {"heading_path", "level", "char_start",
  "char_end"} | null, "new": {...} | null, "old_summary", "new_summary", "change", "score"}],
  "counts": {...}, "front_matter_changed", "model", "summaries": {"generated", "cached", "cache"}}``,
  rows in document order of NEW with removed sections where they stood in OLD
  (`core.alignment`; "what changed" from `core.change_summary`).
- Summaries: only for rows whose status is not ``unchanged`` (an unchanged section, renamed or moved
  or not, is never summarized), both versions by the same model (`Summarizer.generate`, or any
  ``summarize(texts) -> summaries`` the caller passes, e.g. the HTTP app's micro-batcher). Each version
  is summarized part by part exactly as the graph cuts it (`Summarizer.chunk`: the model's tokenizer
  and the profile's section budget), its parts' summaries joined. Without a summarizer the answer is
  the alignment alone, with null summaries.
- `SummaryCache`: an SQLite file (``summaries.sqlite``) in a folder the caller gives (default
  ``<artifacts>/summary_cache/``), safe across threads and processes. Key: the part's cleaned text
  (`core.prompts.clean_section`, what the model is prompted with) and the model identity
  (`model_identity`: folder, a fingerprint of its files (name, size, mtime), engine, quantization,
  dtype, the decoding settings in force, the prompt budget, `core.prompts.prompt_version()`). A
  second compare of the same pair makes no model call; its hit/miss counters live in the same file
  (`SummaryCache.stats`). A file that is not an SQLite database is moved aside and a new one begun.
- Renderers: `render_markdown` (one line per changed section), `render_json`, `render_html` (one
  self-contained side-by-side page: no script, no external resource (a Content-Security-Policy of
  ``default-src 'none'`` says so to the browser), every section a row, all document text escaped).
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from summ_assets.core.alignment import Alignment, Pair, Unit, align_units, split_units, units_of
from summ_assets.core.chunking import parse_front_matter

if TYPE_CHECKING:
    from summ_assets.serving.summarizer import Summarizer

log = logging.getLogger(__name__)

CACHE_FILE = "summaries.sqlite"
NO_HEADING = "(before the first heading)"


# ---- cache --------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    from summ_assets.core.artifacts import artifacts_root

    return artifacts_root() / "summary_cache"


class SummaryCache:
    """Summaries by (cleaned part text, model identity) in ``<folder>/summaries.sqlite``."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / CACHE_FILE
        try:
            self._init()
        except sqlite3.DatabaseError as exc:
            aside = self.path.with_name(f"{CACHE_FILE}.corrupt-{int(time.time())}")
            log.warning(
                "summary cache %s unreadable (%s): moved to %s, starting a new one", self.path, exc, aside
            )
            self.path.replace(aside)
            self._init()

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=30)
        try:
            with con:  # one transaction
                yield con
        finally:
            con.close()

    def _init(self) -> None:
        with self._db() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS summaries (key TEXT PRIMARY KEY, summary TEXT NOT NULL, "
                "model TEXT NOT NULL, created REAL NOT NULL)"
            )
            db.execute("CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
            db.execute("INSERT OR IGNORE INTO counters VALUES ('hits', 0), ('misses', 0)")

    def lookup(self, keys: list[str]) -> dict[str, str]:
        """The cached summaries of `keys`; counts each key found as a hit and each one missing as a miss."""
        found: dict[str, str] = {}
        uniq = list(dict.fromkeys(keys))
        with self._db() as db:
            for s in range(0, len(uniq), 500):
                batch = uniq[s : s + 500]
                marks = ",".join("?" * len(batch))
                q = f"SELECT key, summary FROM summaries WHERE key IN ({marks})"  # only "?" placeholders
                found.update(db.execute(q, batch).fetchall())
            db.execute("UPDATE counters SET value = value + ? WHERE name = 'hits'", (len(found),))
            db.execute(
                "UPDATE counters SET value = value + ? WHERE name = 'misses'", (len(uniq) - len(found),)
            )
        return found

    def store(self, summaries: dict[str, str], model: dict[str, Any]) -> None:
        tag = json.dumps(model, sort_keys=True, ensure_ascii=False)
        now = time.time()
        with self._db() as db:
            db.executemany(
                "INSERT OR REPLACE INTO summaries VALUES (?, ?, ?, ?)",
                [(k, v, tag, now) for k, v in summaries.items()],
            )

    def stats(self) -> dict[str, int]:
        """{"hits", "misses", "entries"} over the file's whole life (every process that used it)."""
        with self._db() as db:
            counters = dict(db.execute("SELECT name, value FROM counters").fetchall())
            entries = db.execute("SELECT COUNT(*) FROM summaries").fetchone()[0]
        return {"hits": counters.get("hits", 0), "misses": counters.get("misses", 0), "entries": entries}


def as_cache(cache: SummaryCache | str | Path | None) -> SummaryCache:
    if isinstance(cache, SummaryCache):
        return cache
    return SummaryCache(cache if cache is not None else default_cache_dir())


def folder_fingerprint(path: str | Path) -> str:
    """A cheap version of a model folder: the name, size and mtime of each of its files."""
    root = Path(path)
    h = hashlib.sha256()
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for p in files:
        rel = p.relative_to(root).as_posix() if p != root else p.name
        if "checkpoint-" in rel or p.name in ("README.md", "card.json"):
            continue
        st = p.stat()
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def model_identity(summarizer: Summarizer) -> dict[str, Any]:
    """Everything a summary depends on besides the section text (the cache key's model half)."""
    from summ_assets.core.prompts import prompt_version

    return {
        "model": str(summarizer.path),
        "files": folder_fingerprint(summarizer.path),
        "engine": str(getattr(summarizer, "engine", "transformers")),
        "quantize": summarizer.quantize,
        "dtype": str(summarizer.dtype),
        "decoding": {**summarizer.decoding, "max_new_tokens": summarizer.max_new_tokens},
        "do_sample": bool(summarizer.do_sample),
        "max_prompt_tokens": summarizer.max_prompt_tokens,
        "prompt_version": prompt_version(),
    }


def summary_key(cleaned_part: str, identity_hash: str) -> str:
    return hashlib.sha256(f"{identity_hash}\0{cleaned_part}".encode()).hexdigest()


# ---- comparison ---------------------------------------------------------------------------------


def _flags_line(p: Pair) -> list[str]:
    out = []
    if p.heading_changed and p.old is not None and p.new is not None:
        out.append(f"renamed: {p.old.title or NO_HEADING} → {p.new.title or NO_HEADING}")
    if p.old is not None and p.new is not None and p.old.level != p.new.level and p.old.level and p.new.level:
        out.append(f"heading level {p.old.level} → {p.new.level}")
    if p.moved:
        out.append("moved")
    return out


def change_line(p: Pair) -> str | None:
    """The row's "what changed": flags, then the sentence-level diff (`core.change_summary`)."""
    from summ_assets.core.change_summary import describe_change, describe_whole

    if p.status == "added":
        return describe_whole(p.new.clean if p.new else "", "new")
    if p.status == "removed":
        return describe_whole(p.old.clean if p.old else "", "removed")
    parts = _flags_line(p)
    if p.status == "edited" and p.old is not None and p.new is not None:
        parts.append(describe_change(p.old.clean, p.new.clean))
    return "; ".join(parts) or None


@dataclass
class Comparison:
    """An alignment and the summaries it needs: `missing_texts()` to generate, `fill()` them, `to_json()`."""

    alignment: Alignment
    old_text: str
    new_text: str
    identity: dict[str, Any] | None = None
    cache: SummaryCache | None = None
    keys: dict[tuple[str, int], list[str]] = field(default_factory=dict)  # (side, unit) -> part keys
    prompts: dict[str, str] = field(default_factory=dict)  # key -> a raw part text to generate
    summaries: dict[str, str] = field(default_factory=dict)  # key -> summary
    cached: int = 0
    generated: int = 0

    def missing_texts(self) -> list[str]:
        """Raw part texts still to summarize (one per distinct cleaned part), in a fixed order."""
        return [self.prompts[k] for k in self._missing()]

    def _missing(self) -> list[str]:
        return [k for k in self.prompts if k not in self.summaries]

    def fill(self, outs: list[str]) -> None:
        """Summaries of `missing_texts()` (same order): kept and written to the cache."""
        missing = self._missing()
        if len(outs) != len(missing):
            raise ValueError(f"{len(outs)} summaries for {len(missing)} texts")
        new = dict(zip(missing, outs, strict=True))
        self.summaries.update(new)
        self.generated += len(new)
        if self.cache is not None and self.identity is not None and new:
            self.cache.store(new, self.identity)

    def _summary(self, side: str, unit: Unit | None) -> str | None:
        if unit is None or (side, unit.index) not in self.keys:
            return None
        outs = [self.summaries.get(k) for k in self.keys[(side, unit.index)]]
        if any(o is None for o in outs):
            return None
        return " ".join(" ".join(str(o).split()) for o in outs).strip()

    def to_json(self) -> dict[str, Any]:
        rows = []
        for p in self.alignment.pairs:
            rows.append(
                {
                    "status": p.status,
                    "heading_changed": p.heading_changed,
                    "moved": p.moved,
                    "old": p.old.span() if p.old else None,
                    "new": p.new.span() if p.new else None,
                    "old_summary": self._summary("old", p.old),
                    "new_summary": self._summary("new", p.new),
                    "change": change_line(p),
                    "score": p.score,
                }
            )
        return {
            "sections": rows,
            "counts": dict(self.alignment.counts),
            "front_matter_changed": self.alignment.front_matter_changed,
            "model": self.identity["model"] if self.identity else None,
            "summaries": {
                "generated": self.generated,
                "cached": self.cached,
                "cache": str(self.cache.path) if self.cache else None,
            },
        }


def _units(text: str, summarizer: Summarizer | None, source: str) -> tuple[list[Unit], str]:
    if summarizer is None:
        return split_units(text, source=source)
    _, fm = parse_front_matter(text, source)
    return units_of(text, summarizer.chunk(text, doc_id=source)), fm


def plan_comparison(
    old_text: str,
    new_text: str,
    summarizer: Summarizer | None = None,
    cache: SummaryCache | str | Path | None = None,
    *,
    old_source: str = "old",
    new_source: str = "new",
) -> Comparison:
    """Align the two versions and look the summaries they need up in the cache (no generation here).
    `FrontMatterError` names the source whose front matter is broken."""
    old_units, old_fm = _units(old_text, summarizer, old_source)
    new_units, new_fm = _units(new_text, summarizer, new_source)
    alignment = align_units(old_units, new_units, old_front_matter=old_fm, new_front_matter=new_fm)
    comp = Comparison(alignment, old_text, new_text)
    if summarizer is None:
        return comp
    from summ_assets.core.prompts import clean_section

    comp.identity = model_identity(summarizer)
    comp.cache = as_cache(cache)
    ident = hashlib.sha256(json.dumps(comp.identity, sort_keys=True, default=str).encode()).hexdigest()
    for p in alignment.pairs:
        if p.status == "unchanged":
            continue
        for side, unit, text in (("old", p.old, old_text), ("new", p.new, new_text)):
            if unit is None:
                continue
            keys = []
            for start, end in unit.parts:
                raw = text[start:end]
                key = summary_key(clean_section(raw), ident)
                keys.append(key)
                comp.prompts.setdefault(key, raw)
            comp.keys[(side, unit.index)] = keys
    if comp.prompts:
        comp.summaries = comp.cache.lookup(list(comp.prompts))
        comp.cached = len(comp.summaries)
    return comp


def compare_documents(
    old_text: str,
    new_text: str,
    summarizer: Summarizer | None = None,
    cache: SummaryCache | str | Path | None = None,
    *,
    old_source: str = "old",
    new_source: str = "new",
    summarize: Callable[[list[str]], list[str]] | None = None,
) -> dict[str, Any]:
    """The comparison as JSON (module doc). `summarize` overrides how missing summaries are generated
    (default: ``summarizer.generate``)."""
    comp = plan_comparison(
        old_text, new_text, summarizer, cache, old_source=old_source, new_source=new_source
    )
    texts = comp.missing_texts()
    if texts and summarizer is not None:
        outs = summarize(texts) if summarize is not None else summarizer.generate(texts)[0]
        comp.fill(list(outs))
    return comp.to_json()


# ---- renderers ----------------------------------------------------------------------------------


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def _labels(row: dict[str, Any]) -> str:
    flags = [row["status"]]
    if row["heading_changed"]:
        flags.append("renamed")
    if row["moved"]:
        flags.append("moved")
    return ", ".join(flags)


def _changed(row: dict[str, Any]) -> bool:
    return row["status"] != "unchanged" or row["heading_changed"] or row["moved"]


def counts_line(result: dict[str, Any]) -> str:
    c = result["counts"]
    main = ", ".join(f"{c[s]} {s}" for s in ("edited", "added", "removed", "unchanged"))
    extra = (
        f"; {c['heading_changed']} renamed, {c['moved']} moved" if c["heading_changed"] or c["moved"] else ""
    )
    fm = "; front matter changed" if result.get("front_matter_changed") else ""
    return f"{main}{extra}{fm}"


def render_markdown(result: dict[str, Any], title: str | None = None) -> str:
    """One line per changed section (status not unchanged, or renamed, or moved), under a counts line."""
    lines = [f"# {title}", ""] if title else []
    lines.append(f"**{counts_line(result)}**")
    lines.append("")
    changed = [r for r in result["sections"] if _changed(r)]
    if not changed:
        lines.append("No section changed.")
    for r in changed:
        side = r["new"] or r["old"]
        path = side["heading_path"] or NO_HEADING
        if r["old"] and r["new"] and r["old"]["heading_path"] != r["new"]["heading_path"]:
            path += f" (was: {r['old']['heading_path'] or NO_HEADING})"
        line = f"- **{_labels(r)}** {path}"
        if r["change"]:
            line += f" — {_one_line(r['change'])}"
        old_s, new_s = r["old_summary"], r["new_summary"]
        if old_s is not None and new_s is not None:
            line += f" — summary: {_one_line(old_s) or '(empty)'} → {_one_line(new_s) or '(empty)'}"
        elif new_s is not None:
            line += f" — summary: {_one_line(new_s) or '(empty)'}"
        elif old_s is not None:
            line += f" — summary was: {_one_line(old_s) or '(empty)'}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def render_json(result: dict[str, Any] | list[dict[str, Any]]) -> str:
    return json.dumps(result, ensure_ascii=False, indent=2) + "\n"


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}
h1{font-size:1.4rem}h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;width:100%;table-layout:fixed}
th,td{border:1px solid #ccc;padding:.4rem;vertical-align:top;text-align:left}
th.status,td.status{width:14rem}
pre{white-space:pre-wrap;word-break:break-word;margin:.3rem 0;font-size:.85rem;background:#f7f7f7;padding:.3rem}
.badge{display:inline-block;padding:0 .4rem;border-radius:.3rem;font-weight:600}
.st-edited .badge{background:#fff0c2}.st-added .badge{background:#d6f5d6}
.st-removed .badge{background:#f8d0d0}.st-unchanged .badge{background:#eee}
.flag{display:inline-block;margin-left:.3rem;font-size:.8rem;color:#555}
.path{font-weight:600}.meta{font-size:.75rem;color:#777}.change{font-size:.85rem;margin-top:.3rem}
.summary{margin:.3rem 0;font-style:italic}.none{color:#aaa}
"""


def _cell(unit: dict[str, Any] | None, text: str, summary: str | None, open_: bool) -> str:
    e = html.escape
    if unit is None:
        return '<span class="none">—</span>'
    body = text[unit["char_start"] : unit["char_end"]]
    out = [
        f'<div class="path">{e(unit["heading_path"] or NO_HEADING)}</div>',
        f'<div class="meta">characters {unit["char_start"]}–{unit["char_end"]}, level {unit["level"]}</div>',
    ]
    if summary is not None:
        out.append(f'<div class="summary">{e(_one_line(summary)) or "(empty summary)"}</div>')
    out.append(f"<details{' open' if open_ else ''}><summary>text</summary><pre>{e(body)}</pre></details>")
    return "".join(out)


def render_html(documents: list[dict[str, Any]], title: str = "summ-assets compare") -> str:
    """One self-contained page; `documents`: [{"title", "result", "old_text", "new_text"}]. Every
    section is a row (``<tr class="row ...">``); every piece of document text is escaped."""
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="ko"><head><meta charset="utf-8">',
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
    ]
    for doc in documents:
        result = doc["result"]
        parts.append(f"<section><h2>{e(doc.get('title') or '')}</h2><p>{e(counts_line(result))}</p>")
        parts.append(
            '<table><thead><tr><th class="status">status</th><th>old</th><th>new</th></tr></thead><tbody>'
        )
        for i, r in enumerate(result["sections"]):
            flags = "".join(
                f'<span class="flag">{f}</span>'
                for f, on in (("renamed", r["heading_changed"]), ("moved", r["moved"]))
                if on
            )
            change = f'<div class="change">{e(r["change"])}</div>' if r["change"] else ""
            open_ = r["status"] != "unchanged"
            parts.append(
                f'<tr class="row st-{e(r["status"])}" id="row-{i}" data-status="{e(r["status"])}">'
                f'<td class="status"><span class="badge">{e(r["status"])}</span>{flags}{change}</td>'
                f'<td class="side old">{_cell(r["old"], doc["old_text"], r["old_summary"], open_)}</td>'
                f'<td class="side new">{_cell(r["new"], doc["new_text"], r["new_summary"], open_)}</td></tr>'
            )
        parts.append("</tbody></table></section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
