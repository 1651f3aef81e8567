"""The alignment recovers known edits: documents built from real sections of data/raw (the training
pool; data/eval is never read), including near-duplicate siblings, with random section inserts,
deletes, renames, moves and sentence-level edits (a sentence replaced, deleted or added; at most a
third of a section's sentences). No model; no Kiwi."""

from __future__ import annotations

import functools
import random
import re
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from summ_assets.core.alignment import align_documents, split_units, strip_heading_lines
from summ_assets_tests.helpers import BUNDLED

_SENT = re.compile(r"(?<=[.?!])\s+")
_NOT_PROSE = re.compile(r"^\s*(?:```|~~~|\||[-*+] |\d+[.)] |>|<|\{\{)", re.M)
ROOT = "# 통합 문서\n\n여러 문서의 절을 모은 시험 문서다.\n\n"


@functools.cache
def pool() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(title, sentences) of every prose-only section of data/raw (level 2+, at least 3 sentences),
    bodies distinct."""
    out, seen = [], set()
    for path in sorted((BUNDLED / "raw").glob("*.md")):
        text = path.read_text(encoding="utf-8")
        for u in split_units(text, source=path.name)[0]:
            body = strip_heading_lines(text[u.char_start : u.char_end]).strip()
            if u.level < 2 or not body or _NOT_PROSE.search(body):
                continue
            sents = tuple(s for s in _SENT.split(" ".join(body.split())) if s)
            if len(sents) >= 3 and sents not in seen:
                seen.add(sents)
                out.append((u.title, sents))
    return tuple(out)


@dataclass
class Sec:
    uid: int
    title: str
    sents: tuple[str, ...]


def render(secs: list[Sec]) -> str:
    return ROOT + "".join(f"## {s.title}\n\n{' '.join(s.sents)}\n\n" for s in secs)


@dataclass
class Scenario:
    old: list[Sec]
    new: list[Sec]
    moved_any: bool
    family: dict[int, int]  # uid -> the uid of the section it is a near-duplicate of (or its own)


def scenario(rng: random.Random, n_ops: int, edit_share: int = 3) -> Scenario:
    """A document of 4-12 real sections (plus 0-2 near-duplicate siblings: a copy with one sentence
    replaced, under a suffixed title) and `n_ops` random edits of it; sentence edits change at most
    1/`edit_share` of a section's sentences (at least one)."""
    secs = pool()
    n = rng.randint(4, 12)
    order = rng.sample(range(len(secs)), n + n_ops + 8)
    # sections to insert and sentences to edit in come from different spare sections
    chosen, spare, donors = order[:n], order[n : n + n_ops], order[n + n_ops :]
    filler = [s for k in donors for s in secs[k][1]]
    old = [Sec(i, secs[k][0], secs[k][1]) for i, k in enumerate(chosen)]
    family = {s.uid: s.uid for s in old}
    for _ in range(rng.randint(0, 2)):  # near-duplicate siblings
        i = rng.randrange(len(old))
        sents = list(old[i].sents)
        sents[rng.randrange(len(sents))] = rng.choice(filler)
        sib = Sec(len(old) + 100, f"{old[i].title} (고급)", tuple(sents))
        family[sib.uid] = family.get(old[i].uid, old[i].uid)
        old.insert(i + 1, sib)
    budget = {s.uid: max(1, len(s.sents) // edit_share) for s in old}
    new = [Sec(s.uid, s.title, s.sents) for s in old]
    moved_any = False
    next_uid = 1000
    for _ in range(n_ops):
        op = rng.choice(["insert", "delete", "rename", "move", "edit", "edit"])
        if op == "insert" or not new:
            k = spare.pop()
            new.insert(rng.randrange(len(new) + 1), Sec(next_uid, secs[k][0], secs[k][1]))
            next_uid += 1
        elif op == "delete":
            new.pop(rng.randrange(len(new)))
        elif op == "rename":
            s = new[rng.randrange(len(new))]
            other = secs[rng.choice(donors)][0]
            s.title = rng.choice(
                [f"{s.title} 정리", f"{s.title}의 요점", other if other != s.title else other + " 2"]
            )
        elif op == "move" and len(new) > 1:
            s = new.pop(rng.randrange(len(new)))
            new.insert(rng.randrange(len(new) + 1), s)
            moved_any = True
        elif op == "edit":  # 1 .. the section's remaining budget of sentence edits at once
            s = new[rng.randrange(len(new))]
            left = budget.get(s.uid, 1)
            if left <= 0:
                continue
            k = rng.randint(1, left)
            budget[s.uid] = left - k
            sents = list(s.sents)
            for _ in range(k):
                kind = rng.choice(["replace", "delete", "add"])
                if kind == "replace":
                    sents[rng.randrange(len(sents))] = rng.choice(filler)
                elif kind == "delete" and len(sents) > 1:
                    sents.pop(rng.randrange(len(sents)))
                else:
                    sents.insert(rng.randrange(len(sents) + 1), rng.choice(filler))
            s.sents = tuple(sents)
    return Scenario(old, new, moved_any, family)


@dataclass
class Outcome:
    unchanged_expected: int
    unchanged_recovered: int
    renamed_expected: int  # renames of unedited sections
    renamed_recovered: int
    edited_expected: int
    edited_recovered: int  # paired with the right section and called edited
    edited_split: int  # reported as removed + added instead
    wrong_pairs: int  # paired with a section it does not come from
    wrong_unrelated: int  # ... and that is not its near-duplicate sibling either
    spurious_moves: int  # moved flags in a scenario without a move


def evaluate(sc: Scenario) -> Outcome:
    al = align_documents(render(sc.old), render(sc.new))
    # unit 0 is the root; unit k+1 is section k
    pairs = {
        (p.old.index - 1 if p.old else None, p.new.index - 1 if p.new else None): p
        for p in al.pairs
        if not (p.old and p.old.index == 0) and not (p.new and p.new.index == 0)
    }
    old_pos = {s.uid: i for i, s in enumerate(sc.old)}
    by_old = {k[0]: (k[1], p) for k, p in pairs.items() if k[0] is not None}
    orig = {s.uid: s for s in sc.old}
    o = Outcome(0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    for j, s in enumerate(sc.new):
        if s.uid not in old_pos:
            continue
        i = old_pos[s.uid]
        got_j, p = by_old[i]
        edited = s.sents != orig[s.uid].sents
        renamed = s.title != orig[s.uid].title
        right = got_j == j
        if not edited:
            o.unchanged_expected += 1
            o.unchanged_recovered += right and p.status == "unchanged" and p.heading_changed == renamed
            if renamed:
                o.renamed_expected += 1
                o.renamed_recovered += right and p.heading_changed
        else:
            o.edited_expected += 1
            o.edited_recovered += right and p.status == "edited"
            o.edited_split += got_j is None
    new_uid = {j: s.uid for j, s in enumerate(sc.new)}
    for i, j in pairs:
        if i is not None and j is not None and sc.old[i].uid != new_uid[j]:
            o.wrong_pairs += 1
            o.wrong_unrelated += sc.family.get(sc.old[i].uid) != sc.family.get(new_uid[j], -1)
    if not sc.moved_any:
        o.spurious_moves = sum(p.moved for p in al.pairs)
    return o


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rng=st.randoms(use_true_random=False), n_ops=st.integers(0, 8))
def test_alignment_recovers_random_edits(rng: random.Random, n_ops: int) -> None:
    """Exact for unchanged sections and for renames of unedited sections (status, pairing, flag); a
    section is never paired with an unrelated one (only a near-duplicate sibling may be mistaken for
    it); no moved flag without a move (unless siblings were mistaken for each other)."""
    o = evaluate(scenario(rng, n_ops))
    assert o.unchanged_recovered == o.unchanged_expected
    assert o.renamed_recovered == o.renamed_expected
    assert o.wrong_unrelated == 0
    assert o.spurious_moves == 0 or o.wrong_pairs > 0


def measure(edit_share: int, n: int = 400) -> Outcome:
    total = Outcome(0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    for seed in range(n):
        rng = random.Random(seed)
        o = evaluate(scenario(rng, rng.randint(0, 8), edit_share))
        for f in total.__dataclass_fields__:
            setattr(total, f, getattr(total, f) + getattr(o, f))
    return total


@pytest.mark.parametrize(("edit_share", "floor"), [(3, 0.99), (1, 0.95)])
def test_recovery_rate_of_edited_sections(edit_share: int, floor: float) -> None:
    """Measured over 400 seeded scenarios (seeds 0..399, 0-8 operations each):

    - edits of at most a third of a section's sentences: unchanged sections 100 % (2,972/2,972),
      renames of unedited sections 100 % (174/174); edited sections paired with their own old version
      and called edited 99.8 % (423/424): the one miss is a deleted section whose near-duplicate
      sibling was edited (the sibling's edited version paired with the deleted one: 1 wrong pair,
      1 removed + added);
    - edits of up to every sentence: unchanged 100 % (2,999/2,999), renames 100 % (183/183), edited
      96.9 % (401/414): 13 heavily rewritten sections reported as removed + added, 1 wrong pair.

    No spurious moved flag in either. The floors sit just under the measured rates."""
    total = measure(edit_share)
    print(total)
    assert total.unchanged_recovered == total.unchanged_expected
    assert total.renamed_recovered == total.renamed_expected
    assert total.edited_recovered / total.edited_expected >= floor
    assert total.wrong_pairs <= 0.01 * total.edited_expected
    assert total.wrong_unrelated == 0
    assert total.spurious_moves == 0
