"""Real-world markup: heading paths from CommonMark headings, and the one prompt-text cleaner."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from summ_assets.core.chunking import CharCounter, FrontMatterError, split_markdown
from summ_assets.core.markup import clean_heading, clean_text
from summ_assets_tests.helpers import BUNDLED, bundled_documents


def _paths(text: str) -> list[str]:
    doc = split_markdown(text, CharCounter(1), max_tokens=100_000)
    assert doc.front_matter_raw + "".join(s.text for s in doc.sections) == text
    return [s.heading_path for s in doc.sections]


# ---- headings -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("title", "visible"),
    [
        ("설치 방법 {#install}", "설치 방법"),
        ("설정 {#config .important}", "설정"),
        ("Setup {: #setup}", "Setup"),
        ("Usage {.wide}", "Usage"),
        ('{{% heading "prerequisites" %}}', "prerequisites"),
        ('{{< glossary_tooltip text="파드" term_id="pod" >}} 배포', "파드 배포"),
        ('<a name="top"></a>개요', "개요"),
        ("{{< toc >}}", "toc"),  # nothing visible: a stable name, never an empty path or markup
        ("{#only-an-id}", "only-an-id"),
        ("평범한 제목", "평범한 제목"),
    ],
)
def test_clean_heading(title: str, visible: str) -> None:
    assert clean_heading(title) == visible


def test_heading_paths_drop_attributes_and_shortcodes() -> None:
    text = (
        "# 가이드 {#guide}\n\n본문.\n\n"
        '## {{% heading "prerequisites" %}}\n\n준비물.\n\n'
        "## 설치 {#install .important}\n\n설치 본문.\n\n### 확인\n\n확인 본문.\n"
    )
    assert _paths(text) == ["가이드", "가이드 / prerequisites", "가이드 / 설치", "가이드 / 설치 / 확인"]


@pytest.mark.parametrize(
    ("body", "paths"),
    [
        # '#' lines inside an HTML block are HTML, not headings
        ("# H\n\nx\n\n<div>\n# not a heading\n</div>\n", ["H"]),
        # indented code
        ("# H\n\nx\n\n    # not a heading\n    code\n", ["H"]),
        # fenced code inside a list item
        ("# H\n\n- item\n\n  ```sh\n  # not a heading\n  ```\n", ["H"]),
        # a heading inside a list item or a quote is not a section
        ("# H\n\n- # in a list\n\n> # in a quote\n", ["H"]),
        # '---' under a list item is a thematic break, not a setext underline
        ("# H\n\n- item\n---\n\nafter\n", ["H"]),
        # a real setext heading still is one
        ("# H\n\nx\n\nSub\n---\n\ny\n", ["H", "H / Sub"]),
        # nested shortcodes in a heading, innermost first
        ('# H\n\nx\n\n## {{< outer >}}{{< tooltip text="안쪽" >}}{{< /outer >}}\n\ny\n', ["H", "H / 안쪽"]),
        # a heading made only of a shortcode
        ('# H\n\nx\n\n## {{% heading "whatsnext" %}}\n\ny\n', ["H", "H / whatsnext"]),
    ],
)
def test_commonmark_edge_cases(body: str, paths: list[str]) -> None:
    assert _paths(body) == paths


def test_no_markup_in_any_bundled_heading_path() -> None:
    for path in bundled_documents():
        for p in _paths(path.read_text(encoding="utf-8-sig")):
            assert "{#" not in p and "{{" not in p and "}}" not in p, (path, p)


_piece = st.sampled_from(
    [
        "# 제목 {#id}",
        "## 하위 {#sub .cls}",
        '## {{% heading "prerequisites" %}}',
        '{{< tooltip text="요청 제한" >}}',
        "{{< note >}}",
        "{{< /note >}}",
        "<!-- 주석 -->",
        "<!-- 여러\n줄 -->",
        "<div>\n# html\n</div>",
        "    # indented",
        "- 항목\n\n  ```\n  # code\n  ```",
        "용어\n: 정의",
        ":::note",
        ":::",
        '!!! note "제목"',
        "    본문",
        "[링크](https://x.y/z)",
        "![그림](/a.png)",
        "본문 문장이다.",
        "",
        "---",
        "제목\n===",
        "```\n# 코드\n```",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_piece, max_size=30), st.sampled_from(["\n", "\r\n"]), st.integers(5, 80))
def test_generated_real_world_markdown_round_trips(pieces, newline, budget) -> None:
    text = newline.join(pieces).replace("\n", newline) if newline != "\n" else "\n".join(pieces)
    try:
        doc = split_markdown(text, CharCounter(1), max_tokens=budget, min_tokens=3)
    except FrontMatterError:
        return
    assert doc.front_matter_raw + "".join(s.text for s in doc.sections) == text
    for s in doc.sections:
        assert text[s.char_start : s.char_end] == s.text
        assert "{#" not in s.heading_path and "{{%" not in s.heading_path and "{{<" not in s.heading_path


# ---- the prompt-text cleaner ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("앞 <!-- 작성자 메모 --> 뒤", "앞 뒤"),
        ("앞\n<!-- 여러\n줄 메모 -->\n뒤", "앞\n\n뒤"),
        ('자세한 내용은 [설치 문서](https://ex.com/install "t")를 본다.', "자세한 내용은 설치 문서를 본다."),
        ("그림 ![구성도](/img/a.png) 설명", "그림 설명"),
        ("[참고 자료][ref] 참조.\n\n[ref]: https://ex.com/ref", "참고 자료 참조."),
        ("주소 <https://ex.com> 참조", "주소 https://ex.com 참조"),
        ('요청은 {{< tooltip text="요청 제한" term_id="rl" >}}을 따른다.', "요청은 요청 제한을 따른다."),
        ("{{< note >}}\n노트 본문.\n{{< /note >}}", "노트 본문."),
        ("{{% warning %}}경고 본문{{% /warning %}}", "경고 본문"),
        ("{{< toc >}}\n\n본문", "본문"),
        ("캐시\n: 자주 쓰는 데이터를 가까이 두는 저장소", "캐시: 자주 쓰는 데이터를 가까이 두는 저장소"),
        ("용어\n: 정의 하나\n: 정의 둘", "용어: 정의 하나; 정의 둘"),
        (":::tip 알아 두기\n팁 본문\n:::", "알아 두기\n팁 본문"),
        (":::note[제목]\n본문\n:::", "제목\n본문"),
        ('!!! note "참고"\n    들여쓴 본문.\n\n다음 문단', "참고\n들여쓴 본문.\n\n다음 문단"),
        (
            'import Tabs from \'@theme/Tabs\';\n\n<Tabs>\n<TabItem value="npm" label="npm">\n설치\n</TabItem>\n</Tabs>',
            "npm\n설치",
        ),
        ("<details><summary>더 보기</summary>숨은 내용</details>", "더 보기 숨은 내용"),
        ("<b>굵게</b>쓴다", "굵게쓴다"),
        ("## 설치 {#install}\n\n본문", "## 설치\n\n본문"),
        # code stays verbatim, fences included (they mark it)
        ("```yaml\n# 주석 [a](b) <!-- c -->\nkey: 1\n```", "```yaml\n# 주석 [a](b) <!-- c -->\nkey: 1\n```"),
        ("인라인 `[a](b)` 코드", "인라인 `[a](b)` 코드"),
        # text that only looks like markup stays
        ("a < b 이고 List<int> 와 <start_of_turn> 문자열", "a < b 이고 List<int> 와 <start_of_turn> 문자열"),
        (
            "GitHub Actions `${{ secrets.TOKEN }}` 와 ${{ env.X }}",
            "GitHub Actions `${{ secrets.TOKEN }}` 와 ${{ env.X }}",
        ),
    ],
)
def test_cleaner_table(raw: str, clean: str) -> None:
    got, fell_back = clean_text(raw)
    assert got == clean and not fell_back
    assert clean_text(got) == (got, False)  # idempotent


def test_cleaner_never_empties_a_section() -> None:
    assert clean_text("<!-- 전부 주석 -->") == ("<!-- 전부 주석 -->", True)
    assert clean_text("{{< toc >}}") == ("{{< toc >}}", True)
    assert clean_text("") == ("", False)


@settings(max_examples=300, deadline=None)
@given(st.lists(_piece, max_size=20))
def test_cleaner_is_idempotent_and_keeps_text(pieces) -> None:
    raw = "\n\n".join(pieces)
    once, fell_back = clean_text(raw)
    assert clean_text(once)[0] == once
    if raw.strip():
        assert once.strip()


def test_bundled_sections_clean_to_visible_text() -> None:
    for path in sorted((BUNDLED / "eval" / "new").glob("*.md")):
        doc = split_markdown(path.read_text(encoding="utf-8"), CharCounter(1), max_tokens=100_000)
        for s in doc.sections:
            got, fell_back = clean_text(s.text)
            assert got.strip() and not fell_back, (path, s.heading_path)
            outside_code = "\n".join(
                line for i, line in enumerate(got.split("```")) if i % 2 == 0 for line in [line]
            )
            for mark in ("<!--", "{{<", "{{%", "](http", "{#"):
                assert mark not in outside_code, (path, s.heading_path, mark)
