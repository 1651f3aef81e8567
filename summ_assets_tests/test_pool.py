"""The unlabelled training pool (`data/pool/`): every page's origin is recorded, and no page repeats a
section of the project's own documents (the test sets imitate real documentation sites)."""

from __future__ import annotations

import re

import pytest

from summ_assets_tests.helpers import BUNDLED, REPO


def _pool_files() -> list[str]:
    return sorted(p.relative_to(REPO).as_posix() for p in (BUNDLED / "pool").rglob("*") if p.is_file())


def test_every_pool_page_is_recorded_in_sources_with_its_source_path() -> None:
    text = (BUNDLED / "SOURCES.md").read_text(encoding="utf-8")
    recorded = set(re.findall(r"^\| `(data/pool/[^`]+)` \| `[^`]+` \|", text, flags=re.M))
    files = _pool_files()
    assert len(files) >= 150
    assert set(files) == recorded
    # the one mention of kubernetes/website says it is not used
    assert [line for line in text.splitlines() if "kubernetes/website" in line] == [
        line for line in text.splitlines() if line.startswith("- Not used: `kubernetes/website`")
    ]
    for sha in re.findall(r"commit[^`\n]*`([0-9a-f]{7,40})", text):
        assert len(sha) == 40, sha  # every pool source names its full commit


@pytest.mark.slow
def test_no_pool_page_repeats_a_section_of_the_projects_documents() -> None:
    """TF-IDF over Kiwi morphemes (`core.section_index`): no pool section reaches OVERLAP_MIN against a
    section of data/raw or data/eval (val and test documents included)."""
    from summ_assets.core.alignment import split_units
    from summ_assets.core.section_index import OVERLAP_MIN, SectionIndex, unit_terms

    ours = sorted(p for d in ("raw", "eval/similar", "eval/new") for p in (BUNDLED / d).rglob("*.md"))
    index, _ = SectionIndex.from_texts(
        (p.relative_to(BUNDLED).as_posix(), p.read_text("utf-8")) for p in ours
    )
    worst = (0.0, "", "")
    for p in sorted((BUNDLED / "pool").rglob("*.md")):
        units = [
            u for u in split_units(p.read_text("utf-8"), source=str(p))[0] if (u.title or u.clean).strip()
        ]
        if not units:
            continue
        scores = index.scores([unit_terms(u) for u in units])
        i, j = divmod(int(scores.argmax()), scores.shape[1])
        if scores[i, j] > worst[0]:
            worst = (
                float(scores[i, j]),
                f"{p.name} :: {units[i].heading_path}",
                str(index.rows[j]["doc_id"]),
            )
    assert worst[0] < OVERLAP_MIN, worst
