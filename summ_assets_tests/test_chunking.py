from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from summ_assets.core.chunking import CharCounter, FrontMatterError, split_markdown, split_to_budget
from summ_assets_tests.helpers import BUNDLED, bundled_documents


def _lossless(text: str, doc) -> None:
    assert doc.front_matter_raw + "".join(s.text for s in doc.sections) == text
    for s in doc.sections:
        assert text[s.char_start : s.char_end] == s.text


@pytest.mark.parametrize("path", bundled_documents(), ids=str)
def test_every_bundled_document_round_trips(path: Path) -> None:
    text = path.read_text(encoding="utf-8-sig")
    doc = split_markdown(text, CharCounter(2), doc_id=str(path), max_tokens=200, min_tokens=8)
    _lossless(text, doc)
    if "pool" in path.relative_to(BUNDLED).parts[:1]:
        return  # real pages (data/SOURCES.md): lossless is all we promise about their layout
    assert doc.metadata.get("title"), "bundled documents carry front matter with a title"
    assert all(s.heading_path for s in doc.sections), "no preamble text before the H1 in bundled docs"


def test_heading_paths_fences_front_matter_and_folding() -> None:
    text = (
        "---\ntitle: T\n---\n# Title\n\nintro\n\n## Empty parent\n### Child\nchild body\n\n"
        "```python\n# not a heading\nx = 1\n```\n\n## Second ##\n\nbody two\n\nSetext Head\n-----------\n\nsetext body\n"
    )
    doc = split_markdown(text, CharCounter(1), max_tokens=10_000)
    _lossless(text, doc)
    paths = [s.heading_path for s in doc.sections]
    assert paths == ["Title", "Title / Empty parent / Child", "Title / Second", "Title / Setext Head"]
    assert doc.metadata == {"title": "T"}
    child = doc.sections[1]
    assert child.text.startswith("## Empty parent\n### Child") and "# not a heading" in child.text


def test_document_without_headings_is_one_preamble_section() -> None:
    text = "그냥 문단입니다.\n\n두 번째 문단입니다.\n"
    doc = split_markdown(text, CharCounter(1), max_tokens=1000)
    assert [s.heading_path for s in doc.sections] == [""]
    _lossless(text, doc)


def test_long_section_splits_at_paragraphs_then_sentences_and_labels_parts() -> None:
    body = "\n\n".join(f"문단 {i}의 첫 문장이다. 두 번째 문장입니다! 세 번째인가요? 네." for i in range(30))
    text = f"# 긴 섹션\n\n{body}\n"
    doc = split_markdown(text, CharCounter(1), max_tokens=120, min_tokens=10)
    _lossless(text, doc)
    parts = doc.sections
    assert len(parts) > 3 and all(s.n_parts == len(parts) for s in parts)
    assert [s.part for s in parts] == list(range(1, len(parts) + 1))
    assert all(s.token_count <= 120 + 10 for s in parts)
    # cuts fall on paragraph or sentence boundaries
    assert all(s.text.endswith(("\n", " ", ".", "!", "?")) for s in parts[:-1])


def test_ten_thousand_line_section_is_split_and_lossless() -> None:
    text = "# Big\n" + "".join(f"line {i} of a huge section.\n" for i in range(10_000))
    doc = split_markdown(text, CharCounter(4), max_tokens=512, min_tokens=8)
    _lossless(text, doc)
    assert len(doc.sections) > 50
    assert max(s.token_count for s in doc.sections) <= 512 + 8


def test_unbreakable_run_is_cut_at_token_boundaries_never_mid_token() -> None:
    from summ_assets.core.chunking import TokenCounter
    from summ_assets_tests.helpers import tiny_tokenizer

    tok = tiny_tokenizer()
    counter = TokenCounter(tok)
    text = "가나다라마바사" * 200  # no spaces, no sentence ends
    parts = split_to_budget(text, counter, max_tokens=50, min_tokens=5)
    assert "".join(parts) == text
    spans = counter.spans(text)
    boundaries = {s for s, _ in spans} | {len(text)}
    pos = 0
    for p in parts[:-1]:
        pos += len(p)
        assert pos in boundaries
    assert all(counter.count(p) <= 55 for p in parts)


def test_trailing_fragment_under_min_merges_into_previous_part() -> None:
    parts = split_to_budget("a" * 100 + "\n\n" + "b" * 3, CharCounter(1), max_tokens=100, min_tokens=10)
    assert len(parts) == 1 or all(len(p) >= 10 for p in parts)
    assert "".join(parts) == "a" * 100 + "\n\n" + "b" * 3


def test_unclosed_front_matter_names_the_file() -> None:
    with pytest.raises(FrontMatterError, match="doc.md:1"):
        split_markdown("---\ntitle: x\n# H\n", CharCounter(1), source="doc.md")


def test_invalid_yaml_front_matter_names_file_and_line() -> None:
    with pytest.raises(FrontMatterError, match=r"doc.md:\d+: invalid YAML"):
        split_markdown("---\ntitle: [unclosed\n---\n# H\n", CharCounter(1), source="doc.md")


line = st.text(alphabet=st.sampled_from(list("가나다 abc#`~-=.!?\t*>|1")), max_size=30)
block = st.one_of(
    line,
    st.builds(lambda lvl, t: "#" * lvl + " " + t, st.integers(1, 7), line),
    st.builds(lambda t: "```\n" + t + "\n```", line),
    st.just(""),
    st.just("---"),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(block, max_size=40), st.sampled_from(["\n", "\r\n"]), st.integers(5, 60))
def test_generated_markdown_round_trips(blocks, newline, budget) -> None:
    text = newline.join(blocks)
    try:
        doc = split_markdown(text, CharCounter(1), max_tokens=budget, min_tokens=3)
    except FrontMatterError:
        return
    _lossless(text, doc)
