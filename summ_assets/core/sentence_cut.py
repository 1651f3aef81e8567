"""The one-sentence cut: the post-processing every stage applies to a raw generation.

`final_summary(raw)` joins the generation into one line and, with `one_sentence`, keeps its first
sentence only. It lives apart from the degeneration checks (`core.degeneration`) because it changes
what trains and what is scored: `core.prompts.prompt_version` hashes this module's source, so editing
the cut re-runs what it must, while a new degeneration check only re-scores stored generations.
"""

from __future__ import annotations

import re

# a sentence ends at . ? ! 。 … (closing quotes/brackets allowed) before whitespace that is not followed
# by a lower-case Latin letter ("e.g. on"), before a Hangul syllable (Korean never glues one to a
# period: "했다.러는" is two sentences) or at the end, once it holds at least MIN_SENTENCE visible
# characters ("1. " of a list stays inside the sentence)
_END = re.compile(r"[.?!。…][\"'”’)\]]*(?=\s+(?![a-z])|\s*$|[가-힣])")
MIN_SENTENCE = 6


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
