"""Heading-aware, token-budgeted, lossless Markdown sectioning.

`split_markdown(text, counter, max_tokens, min_tokens)` returns the document's front matter and its
sections. Guarantees (property-tested): ``front_matter_raw + "".join(s.text for s in sections) == text``
and every section's ``text == text[char_start:char_end]``; nothing is dropped.

Rules:
- YAML front matter (``---`` ... ``---`` at the very top) is document metadata, not a section.
- Top-level CommonMark headings (ATX ``#``..``######`` and setext ``===``/``---``, as markdown-it-py
  parses them) start sections; ``#`` inside code, HTML blocks, list items or quotes does not. Heading
  paths hold visible titles: ``{#id .class}`` attributes, anchors and shortcodes are resolved
  (`core.markup.clean_heading`); the section text itself is never rewritten.
- A heading with no body directly followed by a deeper heading is folded into that child.
- A section longer than `max_tokens` is split at paragraph, then sentence (Korean endings included),
  then token boundaries, never mid-token; parts are labelled ``part k/n``; a trailing fragment under
  `min_tokens` is merged into the part before it.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from summ_assets.core.markup import clean_heading

HEADING_SEP = " / "

_NEWLINE = re.compile(r"\r\n|\r|\n")
# sentence end: ., ?, !, 。, … (optionally followed by closing quotes/brackets) then whitespace
_SENT_END = re.compile(r"(?<=[.?!。…])[\"'”’)\]]*\s+")


class FrontMatterError(ValueError):
    pass


@dataclass
class Section:
    doc_id: str
    ordinal: int
    heading_path: str
    headings: list[str]
    level: int
    part: int
    n_parts: int
    text: str
    char_start: int
    char_end: int
    token_count: int
    section_id: str = ""

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ChunkedDocument:
    doc_id: str
    metadata: dict[str, Any]
    front_matter_raw: str
    sections: list[Section] = field(default_factory=list)


class TokenCounter:
    """Counts tokens with a Hugging Face tokenizer and gives token character spans."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer

    def count(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def spans(self, text: str) -> list[tuple[int, int]]:
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return [tuple(o) for o in enc["offset_mapping"]]


class CharCounter:
    """Fallback counter (one token per `chars_per_token` characters) for tests and benchmarks."""

    def __init__(self, chars_per_token: int = 1):
        self.cpt = chars_per_token

    def count(self, text: str) -> int:
        return -(-len(text) // self.cpt)

    def spans(self, text: str) -> list[tuple[int, int]]:
        return [(i, min(i + self.cpt, len(text))) for i in range(0, len(text), self.cpt)]


def section_id(doc_id: str, heading_path: str, part: int, text: str) -> str:
    h = hashlib.sha256(f"{doc_id}\x00{heading_path}\x00{part}\x00{text}".encode()).hexdigest()
    return h[:20]


def parse_front_matter(text: str, source: str = "<text>") -> tuple[dict[str, Any], str]:
    """Return (metadata, raw front matter text including fences) or ({}, '')."""
    first = text.split("\n", 1)[0].rstrip("\r")
    if first != "---":
        return {}, ""
    m = re.search(r"^(---|\.\.\.)[ \t]*\r?$\n?", text[len(first) + 1 :], flags=re.M)
    if not m:
        raise FrontMatterError(f"{source}:1: front matter opened with '---' but never closed")
    end = len(first) + 1 + m.end()
    raw = text[:end]
    body = text[len(first) + 1 : len(first) + 1 + m.start()]
    import yaml

    try:
        meta = yaml.safe_load(body) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = (mark.line + 2) if mark is not None else 1
        raise FrontMatterError(f"{source}:{line}: invalid YAML front matter: {exc}") from exc
    if not isinstance(meta, dict):
        raise FrontMatterError(f"{source}:2: front matter must be a mapping, got {type(meta).__name__}")
    return meta, raw


def _line_starts(text: str, start: int) -> list[int]:
    """Char offset of every line of text[start:], split where CommonMark splits (CR LF, CR, LF)."""
    return [start] + [m.end() for m in _NEWLINE.finditer(text, start)]


@functools.cache
def _parser() -> Any:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark")


def _find_headings(text: str, start: int) -> list[tuple[int, int, str]]:
    """(char offset of the heading's first line, level, visible title) for every top-level heading.

    CommonMark decides what a heading is (markdown-it-py's block parser): ``#`` lines inside fenced or
    indented code, HTML blocks, list items or block quotes are not headings; a setext underline under a
    list item is not one either. Titles lose attributes and shortcodes (`core.markup.clean_heading`).
    """
    body = text[start:]
    if not body.strip():
        return []
    starts = _line_starts(text, start)
    tokens = _parser().parse(body)
    heads: list[tuple[int, int, str]] = []
    for i, tok in enumerate(tokens):
        if tok.type != "heading_open" or tok.level != 0 or tok.map is None:
            continue
        raw_title = tokens[i + 1].content if i + 1 < len(tokens) else ""
        title = clean_heading(" ".join(raw_title.split()))
        heads.append((starts[tok.map[0]], int(tok.tag[1]), title))
    return heads


def _split_units(text: str) -> list[str]:
    """Paragraphs, each keeping the blank lines that follow it — lossless."""
    units: list[str] = []
    for piece in re.split(r"(?<=\n)(?=[ \t]*\r?\n)", text):
        if units and not piece.strip():
            units[-1] += piece
        elif piece:
            units.append(piece)
    return units


def _split_sentences(text: str) -> list[str]:
    pieces, last = [], 0
    for m in _SENT_END.finditer(text):
        pieces.append(text[last : m.end()])
        last = m.end()
    if last < len(text):
        pieces.append(text[last:])
    return [p for p in pieces if p]


def _split_tokens(text: str, counter: Any, max_tokens: int) -> list[str]:
    spans = counter.spans(text)
    if not spans:
        return [text]
    out, start = [], 0
    for i in range(max_tokens, len(spans), max_tokens):
        cut = spans[i][0]
        if cut > start:
            out.append(text[start:cut])
            start = cut
    out.append(text[start:])
    return [p for p in out if p]


def _pack(pieces: list[str], counter: Any, max_tokens: int) -> list[str]:
    parts: list[str] = []
    cur = ""
    for piece in pieces:
        if cur and counter.count(cur + piece) > max_tokens:
            parts.append(cur)
            cur = piece
        else:
            cur += piece
    if cur:
        parts.append(cur)
    return parts


def split_to_budget(text: str, counter: Any, max_tokens: int, min_tokens: int) -> list[str]:
    """Lossless split of `text` into pieces of at most `max_tokens` (see module doc)."""
    if counter.count(text) <= max_tokens:
        return [text]
    pieces: list[str] = []
    for para in _split_units(text):
        if counter.count(para) <= max_tokens:
            pieces.append(para)
            continue
        for sent in _split_sentences(para):
            if counter.count(sent) <= max_tokens:
                pieces.append(sent)
            else:
                pieces.extend(_split_tokens(sent, counter, max_tokens))
    parts = _pack(pieces, counter, max_tokens)
    if len(parts) > 1 and counter.count(parts[-1]) < min_tokens:
        tail = parts.pop()
        parts[-1] += tail
    return parts


def split_markdown(
    text: str,
    counter: Any,
    *,
    doc_id: str = "doc",
    max_tokens: int = 384,
    min_tokens: int = 8,
    source: str | None = None,
) -> ChunkedDocument:
    """Split a Markdown/plain-text document into sections (see module doc for the rules)."""
    meta, fm_raw = parse_front_matter(text, source or doc_id)
    body_start = len(fm_raw)
    heads = _find_headings(text, body_start)

    # raw blocks: (start, end, level, title)
    blocks: list[tuple[int, int, int, str | None]] = []
    if not heads or heads[0][0] > body_start:
        first = heads[0][0] if heads else len(text)
        if first > body_start:
            blocks.append((body_start, first, 0, None))
    for i, (off, level, title) in enumerate(heads):
        end = heads[i + 1][0] if i + 1 < len(heads) else len(text)
        blocks.append((off, end, level, title))

    # heading paths
    stack: list[tuple[int, str]] = []
    pathed: list[tuple[int, int, int, list[str]]] = []
    for start, end, level, title in blocks:
        if title is not None:
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, title))
        pathed.append((start, end, level, [t for _, t in stack]))

    # whitespace-only preamble joins the next block
    if pathed and pathed[0][2] == 0 and not text[pathed[0][0] : pathed[0][1]].strip() and len(pathed) > 1:
        s0 = pathed.pop(0)
        nxt = pathed[0]
        pathed[0] = (s0[0], nxt[1], nxt[2], nxt[3])

    # fold heading-only blocks into their first (deeper) child
    folded: list[tuple[int, int, int, list[str]]] = []
    pending: tuple[int, int, int, list[str]] | None = None
    for blk in pathed:
        start, end, level, path = blk
        if pending is not None:
            start = pending[0]
            pending = None
        block_text = text[start:end]
        body_lines = block_text.splitlines()[1:]
        is_heading_only = level > 0 and not "".join(body_lines).strip(" \t=-")
        folded.append((start, end, level, path))
        if is_heading_only:
            # fold only when the next block is a deeper heading
            idx = pathed.index(blk)
            if idx + 1 < len(pathed) and pathed[idx + 1][2] > level:
                folded.pop()
                pending = (start, end, level, path)
    if pending is not None:  # cannot happen (last block has no child) but never drop text
        folded.append(pending)

    doc = ChunkedDocument(doc_id=doc_id, metadata=meta, front_matter_raw=fm_raw)
    ordinal = 0
    for start, end, level, path in folded:
        block_text = text[start:end]
        parts = split_to_budget(block_text, counter, max_tokens, min_tokens)
        pos = start
        hp = HEADING_SEP.join(path)
        for k, part_text in enumerate(parts, 1):
            sec = Section(
                doc_id=doc_id,
                ordinal=ordinal,
                heading_path=hp,
                headings=list(path),
                level=level,
                part=k,
                n_parts=len(parts),
                text=part_text,
                char_start=pos,
                char_end=pos + len(part_text),
                token_count=counter.count(part_text),
            )
            sec.section_id = section_id(doc_id, hp, k, part_text)
            doc.sections.append(sec)
            pos += len(part_text)
            ordinal += 1
    return doc
