"""Section alignment between two versions of a document (plain Python: no model, no Dagster).

`align_documents(old_text, new_text, counter)` splits both texts with the pipeline's own
`core.chunking.split_markdown` and pairs their sections one to one. `align_units` does the pairing on
sections split already (`units_of`), which is what the benchmark times.

**Unit.** A heading-level section: the parts the token budget cut a section into are merged back into
one unit (``parts`` keeps their spans), so the counter and budget never change the units, only the
parts a summarizer sees. Offsets are character offsets into each raw input (front matter included).
Front matter is metadata, not a section: `Alignment.front_matter_changed` says whether it changed.

**What is compared.** A unit's *body*: its text under its own heading line(s) (a heading-only parent
folded into its child counts as a heading line), rendered to visible text by the pipeline's cleaner
(`core.markup.clean_text`: shortcodes, comments, link targets, heading attributes go) and normalised
(prose whitespace collapsed, so a re-wrapped paragraph is not an edit; code blocks compared verbatim).
The heading is compared on its own: the unit's visible title (attributes and shortcodes resolved).

**Pairing.** 1. A body that occurs exactly once in OLD and exactly once in NEW pairs at once (an
unchanged or renamed-only section is therefore always recovered, however far it moved). 2. The rest is
a maximum-weight one-to-one assignment (`scipy.optimize.linear_sum_assignment`) on
``score = W_CONTENT*content + W_TITLE*title + W_PARENT*parent + W_POSITION*position``, where content is
the word-level Indel similarity of the bodies (`rapidfuzz.fuzz.ratio` over word sequences, through
`rapidfuzz.process.cdist`), title and parent the character-level similarity of the titles and of the
parent heading paths, and position ``1 - |relative position in OLD - relative position in NEW|`` (a
tie-breaker between near-duplicate siblings). Two empty bodies (heading-only sections) count as
similar as their titles, an empty and a non-empty one as 0. A pair scoring under `MATCH_MIN` is no
match: its sections are reported as removed and added.

**Status** per row: ``unchanged`` (same normalised body), ``edited``, ``added``, ``removed``; flags
that combine with it: ``heading_changed`` (the visible title differs: renamed; a changed heading level
alone, or a renamed parent, is not a rename; both levels are reported) and ``moved`` (the pair is not
in the longest increasing run of matched sections in order, so one insertion or deletion moves
nothing, and a section taken from one place to another is the one that moved).

**Split and merged sections.** A section split in two (e.g. its second half under a new subheading)
pairs with the part that keeps most of its words: that part is ``edited``, the rest ``added``. Sections
merged into one mirror it: the best-matching one is ``edited`` into the merged section, the others
``removed``. No many-to-one links are reported.

**Order** of `Alignment.pairs`: document order of NEW; a removed section comes right after the row
of the nearest section before it in OLD that kept its place (not moved), or first if there is none.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from summ_assets.core.chunking import HEADING_SEP, CharCounter, Section, split_markdown
from summ_assets.core.markup import clean_text

# ---- thresholds ---------------------------------------------------------------------------------
# Chosen on crafted pairs from the training pool's sections (data/raw only; never data/eval or any test
# set) with `benchmarks/tune_compare.py`, which prints the score distributions (seed 0, 400 pairs a
# kind, 338 sections, every pair at the same relative position: the worst case for different sections):
#   kind                                score min / p5 / p50 / max    matched at MATCH_MIN = 0.40
#   same section, <= half its sentences edited      0.49 / 0.60 / 0.79 / 0.97     100 %
#     ... and renamed (another section's title)     0.35 / 0.43 / 0.62 / 0.82      98 %
#   renamed, unedited                               0.80 / 0.80 / 0.83 / 0.93     100 %
#   all but one sentence rewritten, same heading    0.30 / 0.35 / 0.46 / 0.69      79 %
#   two different sections                          0.10 / 0.11 / 0.15 / 0.28       0 %
#   two different sections under the same title     0.30 / 0.30 / 0.31 / 0.39       0 %
# Word-level content similarity of unrelated sections stays <= 0.06 at p95 (particles and common
# verbs), so MATCH_MIN sits just above the same-title different-section maximum. W_CONTENT dominates
# so that a rename of an unedited or lightly edited section (title ~0) passes; W_TITLE + W_PARENT let
# a section mostly rewritten under its own heading still pair (content >= ~0.14 is then enough);
# W_POSITION is small: it breaks ties between near-duplicate siblings.
W_CONTENT = 0.70
W_TITLE = 0.20
W_PARENT = 0.05
W_POSITION = 0.05
MATCH_MIN = 0.40

STATUSES = ("unchanged", "edited", "added", "removed")

# ---- units --------------------------------------------------------------------------------------

_ATX = re.compile(r"^ {0,3}#{1,6}(?:[ \t]|$)")
_SETEXT_UNDERLINE = re.compile(r"^ {0,3}(?:=+|-+)[ \t\r]*$")
_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})")
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Unit:
    """One heading-level section of one version (parts merged)."""

    index: int
    heading_path: str
    headings: tuple[str, ...]
    level: int
    char_start: int
    char_end: int
    parts: tuple[tuple[int, int], ...]
    clean: str  # the visible body (cleaned, lines kept): what the change summary diffs
    key: str  # `clean` normalised: equal keys = unchanged

    @property
    def title(self) -> str:
        return self.headings[-1] if self.headings else ""

    @property
    def parent(self) -> str:
        return HEADING_SEP.join(self.headings[:-1])

    def span(self) -> dict[str, Any]:
        return {
            "heading_path": self.heading_path,
            "level": self.level,
            "char_start": self.char_start,
            "char_end": self.char_end,
        }


def strip_heading_lines(text: str) -> str:
    """`text` without its leading heading lines (ATX, setext, and the blank lines between them)."""
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or _ATX.match(line):
            i += 1
        elif i + 1 < len(lines) and _SETEXT_UNDERLINE.match(lines[i + 1]) and line.strip():
            i += 2
        else:
            break
    return "\n".join(lines[i:])


def normalise(clean: str) -> str:
    """Prose lines of a paragraph joined with their whitespace collapsed (a re-wrapped paragraph reads
    the same); fenced code kept verbatim (right-stripped); paragraphs one per line."""
    out: list[str] = []
    para: list[str] = []
    fence: str | None = None

    def flush() -> None:
        if para:
            out.append(" ".join(para))
            para.clear()

    for line in clean.split("\n"):
        m = _FENCE.match(line)
        if fence is None:
            if m:
                flush()
                fence = m.group(1)
                out.append(line.strip())
            elif line.strip():
                para.append(" ".join(line.split()))
            else:
                flush()
        else:
            out.append(line.rstrip())
            closing = m is not None and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence)
            if closing and not line.strip().strip(fence[0]):
                fence = None
    flush()
    return "\n".join(out)


def units_of(text: str, sections: list[Section]) -> list[Unit]:
    """Heading-level units of a document from its `split_markdown` sections (parts merged back)."""
    groups: list[list[Section]] = []
    for sec in sections:
        if groups and sec.part > 1 and groups[-1][-1].heading_path == sec.heading_path:
            groups[-1].append(sec)
        else:
            groups.append([sec])
    units = []
    for i, g in enumerate(groups):
        start, end = g[0].char_start, g[-1].char_end
        body = strip_heading_lines(text[start:end])
        clean = clean_text(body)[0] if body.strip() else ""
        units.append(
            Unit(
                index=i,
                heading_path=g[0].heading_path,
                headings=tuple(" ".join(h.split()) for h in g[0].headings),
                level=g[0].level,
                char_start=start,
                char_end=end,
                parts=tuple((s.char_start, s.char_end) for s in g),
                clean=clean,
                key=normalise(clean),
            )
        )
    return units


def split_units(
    text: str,
    counter: Any = None,
    *,
    max_tokens: int | None = None,
    min_tokens: int = 8,
    source: str = "doc",
) -> tuple[list[Unit], str]:
    """(units, raw front matter) of one version; `FrontMatterError` names `source`. Without a counter
    the text is not cut into parts at all (the units are the same either way)."""
    if counter is None:
        counter, max_tokens = CharCounter(), len(text) + 1
    doc = split_markdown(
        text,
        counter,
        doc_id=source,
        max_tokens=max_tokens or 384,
        min_tokens=min_tokens,
        source=source,
    )
    return units_of(text, doc.sections), doc.front_matter_raw


# ---- pairs --------------------------------------------------------------------------------------


@dataclass
class Pair:
    """One row of the alignment: a matched pair, an added (old None) or a removed (new None) unit."""

    status: str
    old: Unit | None
    new: Unit | None
    heading_changed: bool = False
    moved: bool = False
    score: float | None = None

    @property
    def changed(self) -> bool:
        return self.status != "unchanged" or self.heading_changed or self.moved


@dataclass
class Alignment:
    pairs: list[Pair]
    old_units: list[Unit]
    new_units: list[Unit]
    front_matter_changed: bool = False
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        c = Counter(p.status for p in self.pairs)
        self.counts = {s: c.get(s, 0) for s in STATUSES}
        self.counts["heading_changed"] = sum(p.heading_changed for p in self.pairs)
        self.counts["moved"] = sum(p.moved for p in self.pairs)
        self.counts["old_sections"] = len(self.old_units)
        self.counts["new_sections"] = len(self.new_units)


def _word_strings(units_a: list[Unit], units_b: list[Unit]) -> tuple[list[str], list[str]]:
    """Each body as a string of one character per word (a shared word -> character map), so that
    rapidfuzz's bit-parallel character metrics compute word-level similarity."""
    vocab: dict[str, str] = {}

    def enc(u: Unit) -> str:
        chars = []
        for w in _WORD.findall(u.key.lower()):
            c = vocab.get(w)
            if c is None:
                # supplementary planes: no surrogates, room for ~1M distinct words
                c = vocab[w] = chr(0x10000 + len(vocab) % 0xFFFFF)
            chars.append(c)
        return "".join(chars)

    return [enc(u) for u in units_a], [enc(u) for u in units_b]


def _similarity(a: list[str], b: list[str], workers: int) -> Any:
    from rapidfuzz import fuzz, process

    return process.cdist(a, b, scorer=fuzz.ratio, dtype="float32", workers=workers) / 100.0


def score_matrix(old: list[Unit], new: list[Unit], n_old: int, n_new: int, workers: int = 1) -> Any:
    """The pairing score (module doc) of every old x new unit, as a float32 array."""
    import numpy as np

    wa, wb = _word_strings(old, new)
    content = _similarity(wa, wb, workers)
    title = _similarity([u.title.casefold() for u in old], [u.title.casefold() for u in new], workers)
    parent = _similarity([u.parent.casefold() for u in old], [u.parent.casefold() for u in new], workers)
    empty_a = np.array([not s for s in wa])
    empty_b = np.array([not s for s in wb])
    both_empty = empty_a[:, None] & empty_b[None, :]
    one_empty = empty_a[:, None] ^ empty_b[None, :]
    content = np.where(both_empty, title, np.where(one_empty, 0.0, content))
    pa = np.array([u.index / max(1, n_old - 1) for u in old], dtype="float32")
    pb = np.array([u.index / max(1, n_new - 1) for u in new], dtype="float32")
    position = 1.0 - np.abs(pa[:, None] - pb[None, :])
    return W_CONTENT * content + W_TITLE * title + W_PARENT * parent + W_POSITION * position


def _stable(matched: list[tuple[int, int]]) -> set[int]:
    """Old indices of the longest run of matched pairs in the same order on both sides (LIS of the old
    indices taken in new order; the earliest-ending run on ties, so results are deterministic)."""
    seq = [o for o, _ in sorted(matched, key=lambda p: p[1])]
    tails: list[int] = []  # tails[k] = index into seq ending an increasing run of length k+1
    prev = [-1] * len(seq)
    for i, v in enumerate(seq):
        k = _bisect(seq, tails, v)
        if k > 0:
            prev[i] = tails[k - 1]
        if k == len(tails):
            tails.append(i)
        else:
            tails[k] = i
    out: set[int] = set()
    i = tails[-1] if tails else -1
    while i >= 0:
        out.add(seq[i])
        i = prev[i]
    return out


def _bisect(seq: list[int], tails: list[int], v: int) -> int:
    lo, hi = 0, len(tails)
    while lo < hi:
        mid = (lo + hi) // 2
        if seq[tails[mid]] < v:
            lo = mid + 1
        else:
            hi = mid
    return lo


def align_units(
    old: list[Unit],
    new: list[Unit],
    *,
    old_front_matter: str = "",
    new_front_matter: str = "",
    workers: int = 1,
) -> Alignment:
    """Pair the units of two versions (module doc: pairing, status, flags, order)."""
    import numpy as np

    match: dict[int, int] = {}  # old index -> new index
    scores: dict[int, float] = {}

    # 1. bodies that occur exactly once on each side and are equal
    old_keys = Counter(u.key for u in old)
    new_keys = Counter(u.key for u in new)
    new_by_key = {u.key: u.index for u in new if u.key and new_keys[u.key] == 1}
    for u in old:
        if u.key and old_keys[u.key] == 1 and u.key in new_by_key:
            match[u.index] = new_by_key[u.key]
            scores[u.index] = 1.0

    # 2. the rest: maximum-weight one-to-one assignment above MATCH_MIN
    taken = set(match.values())
    rest_old = [u for u in old if u.index not in match]
    rest_new = [u for u in new if u.index not in taken]
    if rest_old and rest_new:
        from scipy.optimize import linear_sum_assignment

        s = score_matrix(rest_old, rest_new, len(old), len(new), workers)
        ok = s >= MATCH_MIN
        if ok.any():
            rows, cols = linear_sum_assignment(np.where(ok, -s, 0.0))
            for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
                if ok[r, c]:
                    match[rest_old[r].index] = rest_new[c].index
                    scores[rest_old[r].index] = round(float(s[r, c]), 4)

    stable = _stable(list(match.items()))
    old_of_new = {n: o for o, n in match.items()}
    pairs_by_new: list[Pair] = []
    for u in new:
        o = old_of_new.get(u.index)
        if o is None:
            pairs_by_new.append(Pair("added", None, u))
            continue
        ou = old[o]
        pairs_by_new.append(
            Pair(
                "unchanged" if ou.key == u.key else "edited",
                ou,
                u,
                heading_changed=ou.title != u.title,
                moved=o not in stable,
                score=scores[o],
            )
        )

    # removed units go after the row of the nearest earlier old unit that kept its place
    after: dict[int | None, list[Pair]] = {}
    for u in old:
        if u.index in match:
            continue
        anchor = next((k for k in range(u.index - 1, -1, -1) if k in stable), None)
        after.setdefault(anchor, []).append(Pair("removed", u, None))
    pairs = list(after.get(None, []))
    for p in pairs_by_new:
        pairs.append(p)
        if p.old is not None and p.old.index in stable:
            pairs.extend(after.get(p.old.index, []))
    return Alignment(
        pairs, old, new, front_matter_changed=old_front_matter.strip() != new_front_matter.strip()
    )


def align_documents(
    old_text: str,
    new_text: str,
    counter: Any = None,
    *,
    max_tokens: int | None = None,
    min_tokens: int = 8,
    old_source: str = "old",
    new_source: str = "new",
    workers: int = 1,
) -> Alignment:
    """Split both versions with `split_markdown` (`counter`, budget) and align them; a broken front
    matter raises `FrontMatterError` naming its source."""
    old_units, old_fm = split_units(
        old_text, counter, max_tokens=max_tokens, min_tokens=min_tokens, source=old_source
    )
    new_units, new_fm = split_units(
        new_text, counter, max_tokens=max_tokens, min_tokens=min_tokens, source=new_source
    )
    return align_units(
        old_units, new_units, old_front_matter=old_fm, new_front_matter=new_fm, workers=workers
    )
