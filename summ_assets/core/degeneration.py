"""Degenerate generations, measured, and the one-sentence cut.

`flags(text)` marks what a one-sentence summary must not have: a digit run of 8+, a 3-gram of
whitespace-separated words repeated 3+ times, a phrase (2-8 words) repeated back to back, leaked markup
(``{{``, ``<!--``, ``](``), a line break, more than one sentence. `shares` turns a list of outputs into
the share of each flag (empty outputs are counted apart: the empty-output gate owns them).
`final_summary` is the post-processing every stage applies to a raw generation: one line, cut at the
end of its first sentence.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

FLAGS = ("digit_run", "repeated_3gram", "phrase_loop", "markup", "line_break", "multi_sentence")
MARKUP = ("{{", "<!--", "](")
# a sentence ends at . ? ! 。 … (closing quotes/brackets allowed) before whitespace that is not followed
# by a lower-case Latin letter ("e.g. on"), before a Hangul syllable (Korean never glues one to a
# period: "했다.러는" is two sentences) or at the end, once it holds at least MIN_SENTENCE visible
# characters ("1. " of a list stays inside the sentence)
_END = re.compile(r"[.?!。…][\"'”’)\]]*(?=\s+(?![a-z])|\s*$|[가-힣])")
MIN_SENTENCE = 6
_DIGITS = re.compile(r"\d{8,}")


def first_sentence_end(text: str) -> int | None:
    """Index just past the first sentence's end mark, or None when the text has no full sentence."""
    for m in _END.finditer(text):
        if len(re.sub(r"\s", "", text[: m.end()])) >= MIN_SENTENCE:
            return m.end()
    return None


def final_summary(raw: str, one_sentence: bool = True) -> str:
    """A raw generation as a summary: whitespace runs (line breaks included) become one space; with
    `one_sentence`, everything after the first sentence goes."""
    text = " ".join(raw.split())
    if one_sentence:
        end = first_sentence_end(text)
        if end is not None:
            text = text[:end]
    return text


def _words(text: str) -> list[str]:
    return [w.strip(",.;:!?\"'()[]") for w in text.split()]


def _phrase_loop(words: list[str]) -> bool:
    for n in range(2, 9):
        for i in range(len(words) - 2 * n + 1):
            if words[i : i + n] == words[i + n : i + 2 * n] and any(words[i : i + n]):
                return True
    return False


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
        "markup": any(m in body for m in MARKUP),
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
