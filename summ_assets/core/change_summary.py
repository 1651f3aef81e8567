"""A one-line "what changed" for two versions of a section, from a sentence-level diff.

`describe_change(old, new)` takes the visible bodies (the cleaner's output, `core.alignment.Unit.clean`)
and says, in one line: how many sentences were added, removed and changed (`difflib` over the
sentences of `core.metrics.split_sentences`: line breaks, then Kiwi), then, inside the changed
sentences, the numbers that changed (``512토큰 → 1,024토큰``) and the other short spans that changed
(``names: multilingual-e5-base → bge-m3``; a word-level diff, spans of at most `MAX_NAME_WORDS` words
a side). For example::

    1 sentence added, 1 changed; numbers: 768차원 → 1,024차원; names: e5-base → bge-m3

Plain Python (Kiwi loads on the first call, about a second).
"""

from __future__ import annotations

import difflib
import re

MAX_ITEMS = 3  # numbers / names listed per line, then "(+k more)"
MAX_NAME_WORDS = 3  # a longer changed span is rewording, not a name

# a word with the punctuation numbers and identifiers carry inside (1,024 / 0.2 / v1.2 / e5-base / a_b)
_TOKEN = re.compile(r"\w+(?:[.,:/%\-]\w+)*%?")
_NUMBER = re.compile(r"(?:^|\s)\d")  # a word that starts with a digit: 768차원, 1,024, 3초


def sentences(text: str) -> list[str]:
    """The sentences of a visible body (whitespace inside each collapsed)."""
    from summ_assets.core.metrics import split_sentences

    return [" ".join(s.split()) for s in split_sentences(text)]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _listed(items: list[str]) -> str:
    seen: list[str] = []
    for it in items:
        if it not in seen:
            seen.append(it)
    more = len(seen) - MAX_ITEMS
    return ", ".join(seen[:MAX_ITEMS]) + (f" (+{more} more)" if more > 0 else "")


def token_changes(old: str, new: str) -> tuple[list[str], list[str]]:
    """(number changes, name changes) between two passages, each as ``"old → new"``."""
    a, b = _TOKEN.findall(old), _TOKEN.findall(new)
    numbers: list[str] = []
    names: list[str] = []
    sm = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for op, i1, i2, j1, j2 in sm.get_opcodes():
        if op != "replace":
            continue
        # as many words on each side: word by word (``e5-base 768차원`` -> two changes), else the span
        spans = (
            [([x], [y]) for x, y in zip(a[i1:i2], b[j1:j2], strict=True)]
            if i2 - i1 == j2 - j1
            else [(a[i1:i2], b[j1:j2])]
        )
        for xs, ys in spans:
            left, right = " ".join(xs), " ".join(ys)
            if _NUMBER.search(left) or _NUMBER.search(right):
                numbers.append(f"{left} → {right}")
            elif len(xs) <= MAX_NAME_WORDS and len(ys) <= MAX_NAME_WORDS:
                names.append(f"{left} → {right}")
    return numbers, names


def describe_change(old: str, new: str) -> str:
    """One line: sentences added / removed / changed, then numbers and names changed (module doc)."""
    if old == new:
        return "no change in the text"
    sa, sb = sentences(old), sentences(new)
    if sa == sb:
        return "formatting only (same sentences)"
    added = removed = changed = 0
    numbers: list[str] = []
    names: list[str] = []
    sm = difflib.SequenceMatcher(None, sa, sb, autojunk=False)
    for op, i1, i2, j1, j2 in sm.get_opcodes():
        if op == "insert":
            added += j2 - j1
        elif op == "delete":
            removed += i2 - i1
        elif op == "replace":
            n = min(i2 - i1, j2 - j1)
            changed += n
            added += (j2 - j1) - n
            removed += (i2 - i1) - n
            nums, nms = token_changes(" ".join(sa[i1:i2]), " ".join(sb[j1:j2]))
            numbers += nums
            names += nms
    counts = []
    if added:
        counts.append(f"{_plural(added, 'sentence')} added")
    if removed:
        counts.append(f"{removed} removed" if counts else f"{_plural(removed, 'sentence')} removed")
    if changed:
        counts.append(f"{changed} changed" if counts else f"{_plural(changed, 'sentence')} changed")
    line = ", ".join(counts)
    if numbers:
        line += f"; numbers: {_listed(numbers)}"
    if names:
        line += f"; names: {_listed(names)}"
    return line


def describe_whole(text: str, verb: str) -> str:
    """The line of a section that exists on one side only: ``new section, 4 sentences``."""
    n = len(sentences(text)) if text.strip() else 0
    return f"{verb} section, {_plural(n, 'sentence')}" if n else f"{verb} section (heading only)"
