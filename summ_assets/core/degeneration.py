"""Degenerate generations, measured.

`flags(text)` marks what a one-sentence summary must not have: a digit run of 8+, a 3-gram of
whitespace-separated words repeated 3+ times, a phrase (2-8 words) repeated back to back, a comma-joined
list that repeats one item 3+ times (``ROWS, ROWS, ORDER BY, ROWS``), one word 4+ times (English
function words aside), leaked markup (``{{``, ``<!--``, ``](``), a leaked HTML tag (``</i>``, ``<br/>``;
a known HTML element name outside inline code, so a ``<service>`` placeholder is not one), a line
break, more than one sentence. `shares` turns a list of outputs into the share of each flag (empty
outputs are counted apart: the empty-output gate owns them).

The one-sentence cut lives in `core.sentence_cut`: it decides what trains, these checks only score, so
a new check here re-scores stored generations without re-running any model (`prompt_version` hashes
the cut, not this module).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from summ_assets.core.sentence_cut import first_sentence_end

FLAGS = (
    "digit_run",
    "repeated_3gram",
    "phrase_loop",
    "comma_loop",
    "word_repeat",
    "markup",
    "html_tag",
    "line_break",
    "multi_sentence",
)
MARKUP = ("{{", "<!--", "](")
_DIGITS = re.compile(r"\d{8,}")
WORD_REPEAT_MIN = 4  # one word this many times
COMMA_ITEM_REPEAT_MIN = 3  # one item of a comma-joined list this many times
# English function words repeat in any long sentence ("the pod restarts when the probe fails and the …")
FUNCTION_WORDS = frozenset(
    "a an the and or of to in on for with by as at from is are be was were it its that this than then "
    "when if not no".split()
)
HTML_ELEMENTS = frozenset(
    "a abbr b blockquote br caption code col dd del details div dl dt em figcaption figure font h1 h2 h3 "
    "h4 h5 h6 hr i iframe img input ins kbd li link mark meta ol p pre q s script section small span "
    "strong style sub summary sup table tbody td th thead tr tt u ul var video".split()
)
_TAG = re.compile(r"</?([A-Za-z][A-Za-z0-9]*)(?:\s[^<>]*)?/?>")
_INLINE_CODE = re.compile(r"`[^`]*`")
_COMMA = re.compile(r"[,，、]")


def _words(text: str) -> list[str]:
    return [w.strip(",.;:!?\"'()[]") for w in text.split()]


def _phrase_loop(words: list[str]) -> bool:
    for n in range(2, 9):
        for i in range(len(words) - 2 * n + 1):
            if words[i : i + n] == words[i + n : i + 2 * n] and any(words[i : i + n]):
                return True
    return False


def _comma_loop(body: str) -> bool:
    items = [w.strip(" .;:!?\"'()[]").lower() for w in _COMMA.split(body)]
    counts = Counter(i for i in items if i)
    return (
        len(items) >= COMMA_ITEM_REPEAT_MIN and bool(counts) and max(counts.values()) >= COMMA_ITEM_REPEAT_MIN
    )


def _word_repeat(words: list[str]) -> bool:
    counts = Counter(w.lower() for w in words if w and w.lower() not in FUNCTION_WORDS)
    return bool(counts) and max(counts.values()) >= WORD_REPEAT_MIN


def _html_tag(body: str) -> bool:
    return any(m.group(1).lower() in HTML_ELEMENTS for m in _TAG.finditer(_INLINE_CODE.sub("", body)))


def flags(text: str) -> dict[str, bool]:
    """Which degeneration checks `text` fails (see module doc)."""
    body = text.strip()
    words = body.split()
    grams = Counter(tuple(words[i : i + 3]) for i in range(len(words) - 2))
    end = first_sentence_end(body)
    return {
        "digit_run": bool(_DIGITS.search(body)),
        "repeated_3gram": bool(grams) and max(grams.values()) >= 3,
        "phrase_loop": _phrase_loop(_words(body)),
        "comma_loop": _comma_loop(body),
        "word_repeat": _word_repeat(_words(body)),
        "markup": any(m in body for m in MARKUP),
        "html_tag": _html_tag(body),
        "line_break": "\n" in body or "\r" in body,
        "multi_sentence": end is not None and bool(re.search(r"\w", body[end:])),
    }


def is_degenerate(text: str) -> bool:
    return bool(text.strip()) and any(flags(text).values())


def shares(texts: list[str]) -> dict[str, Any]:
    """{"n", "empty", "degenerate" (share of non-empty outputs failing any check), <flag>: share}."""
    scored = [flags(t) for t in texts if t.strip()]
    n = len(scored)
    out: dict[str, Any] = {"n": len(texts), "empty": len(texts) - n}
    out["degenerate"] = sum(any(f.values()) for f in scored) / n if n else 0.0
    for name in FLAGS:
        out[name] = sum(f[name] for f in scored) / n if n else 0.0
    return out
