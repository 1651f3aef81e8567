"""`summ-assets compare`, ``POST /compare``, the summary cache and the HTML page (serving.compare).

The CLI and HTML tests run without a model (--no-summaries, or no promoted student); the cache, the
summaries and the API run the real `Summarizer` on the tiny random student (helpers.tiny_models)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from summ_assets_tests.helpers import BUNDLED, REPO, tiny_models

DOC = BUNDLED / "raw" / "ko-rag-pipeline.md"
TEXT = DOC.read_text(encoding="utf-8")
ROOT = "RAG 파이프라인 설계"
SCRIPT = "## 보안 주의\n\n이 절은 <script>alert(1)</script> 를 그대로 담는다. 태그 <b>굵게</b> 도 글자다.\n\n"


def edited_version(text: str = TEXT) -> str:
    """768차원 -> 1024차원 (임베딩 edited), a <script> section added, 평가 removed."""
    start = text.index("## 평가")
    end = text.index("## ", start + 3)
    out = text[:start] + text[end:]
    return out.replace("768차원", "1024차원").replace("## 재순위화", SCRIPT + "## 재순위화")


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    old, new = tmp_path / "old.md", tmp_path / "new.md"
    old.write_text(TEXT, encoding="utf-8")
    new.write_text(edited_version(), encoding="utf-8")
    return old, new


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The tiny profile, an empty artifacts folder: no promoted student."""
    monkeypatch.setenv("SUMM_PROFILE", "tiny")
    monkeypatch.setenv("SUMM_ARTIFACTS", str(tmp_path / "artifacts"))
    return tmp_path / "artifacts"


# ------------------------------------------------------------------------------------------ HTML


def test_html_page_is_self_contained_escaped_and_has_every_row() -> None:
    from summ_assets.serving.compare import compare_documents, render_html

    new = edited_version()
    result = compare_documents(TEXT, new)
    page = render_html([{"title": "old.md → new.md", "result": result, "old_text": TEXT, "new_text": new}])
    assert page.count('<tr class="row ') == len(result["sections"]) == 11
    assert [m for m in re.findall(r'data-status="(\w+)"', page)] == [r["status"] for r in result["sections"]]
    # the document's markup is text: escaped, never markup of the page
    assert "<script" not in page.lower() and "<b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;b&gt;굵게&lt;/b&gt;" in page
    # nothing to fetch: the page's own markup has no element or attribute that loads anything, its
    # style no url() or @import (document text may hold URLs: as escaped text); a CSP forbids it anyway
    tags, attrs, style = _markup(page)
    assert tags <= {"html", "head", "meta", "title", "style", "body", "h1", "h2", "section", "p", "table", "thead",
                    "tbody", "tr", "th", "td", "span", "div", "details", "summary", "pre"}, tags  # fmt: skip
    assert attrs <= {
        "lang",
        "charset",
        "http-equiv",
        "content",
        "name",
        "class",
        "id",
        "data-status",
        "open",
    }, attrs
    assert "url(" not in style and "@import" not in style
    assert "default-src 'none'" in page
    # every section's text is on the page, on its side
    for r in result["sections"]:
        for side, text in (("old", TEXT), ("new", new)):
            if r[side]:
                body = text[r[side]["char_start"] : r[side]["char_end"]]
                assert _html_escape(body) in page


def _markup(page: str) -> tuple[set[str], set[str], str]:
    """(tag names, attribute names, text of <style> elements) of an HTML page."""
    from html.parser import HTMLParser

    class P(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.tags: set[str] = set()
            self.attrs: set[str] = set()
            self.style = ""
            self._in_style = False

        def handle_starttag(self, tag, attrs):
            self.tags.add(tag)
            self.attrs |= {a for a, _ in attrs}
            self._in_style = tag == "style"

        def handle_endtag(self, tag):
            self._in_style = False

        def handle_data(self, data):
            if self._in_style:
                self.style += data

    p = P()
    p.feed(page)
    return p.tags, p.attrs, p.style


# Chromium's own background services (sign-in, time, translation, dictionaries): not the page's requests
_BROWSER_HOSTS = ("google.com", "googleapis.com", "gvt1.com", "gstatic.com")


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs chromium (apt-get install chromium)")
def test_html_page_renders_in_headless_chromium_with_every_row_and_no_request(tmp_path: Path) -> None:
    """The page in a real browser: every section row is in the DOM, the document's `<script>` and
    `<img>` are text (the title is untouched, no image element), and the net log holds no request the
    page made (only file:// and the browser's own background services)."""
    from urllib.parse import urlparse

    from summ_assets.serving.compare import compare_documents, render_html

    new = (
        edited_version()
        + '\n## 그림\n\n<img src="http://example.invalid/x.png" onerror="document.title=1">\n'
    )
    result = compare_documents(TEXT, new)
    page = tmp_path / "page.html"
    page.write_text(
        render_html([{"title": "t", "result": result, "old_text": TEXT, "new_text": new}], title="compare t"),
        encoding="utf-8",
    )
    net = tmp_path / "net.json"
    run = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         f"--log-net-log={net}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    dom = run.stdout
    assert dom.count('<tr class="row ') == len(result["sections"]) > 5
    assert "<title>compare t</title>" in dom
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom and "<img" not in dom
    urls = {e["params"]["url"] for e in json.loads(net.read_text())["events"] if "url" in e.get("params", {})}
    page_requests = [
        u for u in urls if not u.startswith("file:") and not urlparse(u).hostname.endswith(_BROWSER_HOSTS)
    ]
    assert page_requests == []


def _html_escape(s: str) -> str:
    import html

    return html.escape(s)


def test_markdown_has_one_line_per_changed_section() -> None:
    from summ_assets.serving.compare import compare_documents, render_markdown

    md = render_markdown(compare_documents(TEXT, edited_version()), "old → new")
    lines = [x for x in md.splitlines() if x.startswith("- ")]
    assert lines == [
        f"- **edited** {ROOT} / 임베딩 — 1 sentence changed; numbers: 768차원 → 1024차원",
        f"- **added** {ROOT} / 보안 주의 — new section, 2 sentences",
        f"- **removed** {ROOT} / 평가 — removed section, 9 sentences",
    ]
    assert "**1 edited, 1 added, 1 removed, 8 unchanged**" in md


# ------------------------------------------------------------------------------------------- CLI


def test_cli_fail_on_gives_exit_code_1(no_model: Path, files, capsys: pytest.CaptureFixture[str]) -> None:
    from summ_assets.cli import main

    old, new = files
    assert main(["compare", str(old), str(new), "--fail-on", "edited"]) == 1
    captured = capsys.readouterr()
    assert "3 section(s) edited (--fail-on)" not in captured.err  # only the edited one counts
    assert "1 section(s) edited (--fail-on)" in captured.err
    assert "no summaries (no promoted student" in captured.err  # no model: the alignment alone
    assert main(["compare", str(old), str(new), "--fail-on", "added,removed"]) == 1
    assert "2 section(s) added/removed (--fail-on)" in capsys.readouterr().err
    assert main(["compare", str(old), str(new), "--fail-on", "moved,renamed"]) == 0
    assert main(["compare", str(old), str(new), "--no-summaries"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# {old} → {new}\n") and f"- **removed** {ROOT} / 평가" in out
    with pytest.raises(SystemExit) as exc:
        main(["compare", str(old), str(new), "--fail-on", "edited,deleted"])
    assert exc.value.code == 2
    assert "'edited,deleted': a comma-separated list of added, removed, edited" in capsys.readouterr().err


def test_cli_same_file_twice_is_unchanged(no_model: Path, files, capsys: pytest.CaptureFixture[str]) -> None:
    from summ_assets.cli import main

    old, _ = files
    assert main(["compare", str(old), str(old), "--fail-on", "added,removed,edited,moved,renamed"]) == 0
    out = capsys.readouterr().out
    assert "**0 edited, 0 added, 0 removed, 10 unchanged**" in out and "No section changed." in out


def test_cli_json_and_html_outputs(no_model: Path, files, tmp_path: Path) -> None:
    from summ_assets.cli import main

    old, new = files
    out = tmp_path / "r.json"
    assert main(["compare", str(old), str(new), "--format", "json", "--output", str(out)]) == 0
    r = json.loads(out.read_text(encoding="utf-8"))
    assert (r["old_file"], r["new_file"]) == (str(old), str(new))
    assert r["counts"] == {
        "unchanged": 8,
        "edited": 1,
        "added": 1,
        "removed": 1,
        "heading_changed": 0,
        "moved": 0,
        "old_sections": 10,
        "new_sections": 10,
    }
    row = next(s for s in r["sections"] if s["status"] == "edited")
    assert set(row) == {
        "status",
        "heading_changed",
        "moved",
        "old",
        "new",
        "old_summary",
        "new_summary",
        "change",
        "score",
    }
    assert set(row["old"]) == {"heading_path", "level", "char_start", "char_end"}
    assert TEXT[row["old"]["char_start"] :].startswith("## 임베딩")
    assert row["old_summary"] is None and r["model"] is None
    page = tmp_path / "r.html"
    assert main(["compare", str(old), str(new), "--format", "html", "--output", str(page)]) == 0
    assert page.read_text(encoding="utf-8").count('<tr class="row ') == 11


def test_cli_folders_pair_files_by_name(
    no_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from summ_assets.cli import main

    a, b = tmp_path / "v1", tmp_path / "v2"
    (a / "sub").mkdir(parents=True)
    (b / "sub").mkdir(parents=True)
    (a / "sub" / "rag.md").write_text(TEXT, encoding="utf-8")
    (b / "sub" / "rag.md").write_text(edited_version(), encoding="utf-8")
    (a / "gone.md").write_text("# 사라짐\n\n지워질 문서다.\n\n## 둘째\n\n둘째 절이다.\n", encoding="utf-8")
    (b / "fresh.md").write_text("# 새 문서\n\n처음 생긴 문서다.\n", encoding="utf-8")
    (b / "notes.bin").write_bytes(b"\x00\x01")  # not a document: ignored
    out = tmp_path / "r.json"
    assert main(["compare", str(a), str(b), "--format", "json", "--output", str(out)]) == 0
    r = json.loads(out.read_text(encoding="utf-8"))
    docs = {
        (d["old_file"] and Path(d["old_file"]).name, d["new_file"] and Path(d["new_file"]).name): d
        for d in r["documents"]
    }
    assert set(docs) == {(None, "fresh.md"), ("gone.md", None), ("rag.md", "rag.md")}
    assert [s["status"] for s in docs[(None, "fresh.md")]["sections"]] == ["added"]
    assert [s["status"] for s in docs[("gone.md", None)]["sections"]] == ["removed", "removed"]
    assert r["counts"]["added"] == 2 and r["counts"]["removed"] == 3 and r["counts"]["edited"] == 1
    assert main(["compare", str(a), str(b), "--fail-on", "removed"]) == 1
    err = capsys.readouterr().err
    assert "gone.md: 0 edited, 0 added, 2 removed, 0 unchanged" in err
    # a file and a folder
    assert main(["compare", str(a / "gone.md"), str(b)]) == 2
    assert "give two files or two folders" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty (no bytes)"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "binary"),
        ("# 제목\n\n본문 ".encode() + b"\xff\xfe", ":3:8: invalid UTF-8"),
        (b" \n\t\n", "has no text (only whitespace)"),
        ("---\ntitle: x\n본문\n".encode(), ":1: front matter opened with '---' but never closed"),
        ("---\ntitle: [x\n---\n# 제목\n".encode(), "invalid YAML front matter"),
    ],
)
def test_cli_bad_input_is_a_clear_error_naming_the_file(
    no_model: Path, files, tmp_path: Path, content: bytes, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from summ_assets.cli import main

    old, _ = files
    bad = tmp_path / "bad.md"
    bad.write_bytes(content)
    for args in ([str(old), str(bad)], [str(bad), str(old)]):
        assert main(["compare", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"summ-assets compare: error: {bad}") and message in err, err
        assert "Traceback" not in err


def test_cli_missing_and_too_large_files(no_model: Path, files, tmp_path: Path, capsys) -> None:
    from summ_assets.cli import main

    old, _ = files
    assert main(["compare", str(old), str(tmp_path / "missing.md")]) == 2
    assert f"{tmp_path / 'missing.md'}: no such file" in capsys.readouterr().err
    big = tmp_path / "big.md"
    big.write_bytes(b"# big\n\n" + b"a" * 2_000_000)
    assert main(["compare", str(big), str(old)]) == 2
    assert f"{big}: 2,000,007 bytes exceeds the size limit of 2,000,000 bytes" in capsys.readouterr().err


# ------------------------------------------------------------------- summaries and the cache (tiny model)


@pytest.fixture(scope="module")
def summarizer():
    from summ_assets.core.profiles import get_profile
    from summ_assets.serving import Summarizer

    _, student = tiny_models()
    s = Summarizer(student, profile=get_profile("tiny"))
    yield s
    s.close()


def test_cache_second_compare_makes_no_model_call(summarizer, tmp_path: Path) -> None:
    from summ_assets.serving.compare import SummaryCache, compare_documents

    cache_dir = tmp_path / "cache"
    generated_before = summarizer.stats["sections"]
    # the same document twice: nothing summarized, nothing even looked up
    same = compare_documents(TEXT, TEXT, summarizer, cache_dir)
    assert {r["status"] for r in same["sections"]} == {"unchanged"}
    assert same["summaries"]["generated"] == 0 and same["summaries"]["cached"] == 0
    assert SummaryCache(cache_dir).stats() == {"hits": 0, "misses": 0, "entries": 0}
    assert summarizer.stats["sections"] == generated_before

    new = edited_version()
    first = compare_documents(TEXT, new, summarizer, cache_dir)
    # 임베딩 old + new, 보안 주의 (added), 평가 (removed): 4 section versions, one part each
    assert first["summaries"]["generated"] == 4 and first["summaries"]["cached"] == 0
    assert summarizer.stats["sections"] - generated_before == 4
    assert SummaryCache(cache_dir).stats() == {"hits": 0, "misses": 4, "entries": 4}
    assert first["model"] == str(summarizer.path)
    for r in first["sections"]:
        if r["status"] == "unchanged":
            assert r["old_summary"] is None and r["new_summary"] is None
        else:
            assert (r["old_summary"] is not None) == (r["old"] is not None)
            assert (r["new_summary"] is not None) == (r["new"] is not None)

    second = compare_documents(TEXT, new, summarizer, cache_dir)
    assert second["summaries"]["generated"] == 0 and second["summaries"]["cached"] == 4
    assert summarizer.stats["sections"] - generated_before == 4  # no model call
    assert SummaryCache(cache_dir).stats() == {"hits": 4, "misses": 4, "entries": 4}
    assert second["sections"] == first["sections"]

    # another process (the CLI) finds them too
    env = {
        **os.environ,
        "SUMM_PROFILE": "tiny",
        "SUMM_ARTIFACTS": str(tmp_path / "art"),
        "HF_HUB_OFFLINE": "1",
    }
    old_f, new_f = tmp_path / "old.md", tmp_path / "new.md"
    old_f.write_text(TEXT, encoding="utf-8")
    new_f.write_text(new, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "summ_assets.cli", "compare", str(old_f), str(new_f), "--model", str(summarizer.path),
         "--cache-dir", str(cache_dir), "--format", "json"],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    third = json.loads(proc.stdout)
    assert third["summaries"] == {"generated": 0, "cached": 4, "cache": str(cache_dir / "summaries.sqlite")}
    assert [r["new_summary"] for r in third["sections"]] == [r["new_summary"] for r in first["sections"]]
    assert "0 generated, 4 from the cache" in proc.stderr
    assert SummaryCache(cache_dir).stats() == {"hits": 8, "misses": 4, "entries": 4}

    # the mirror reuses every summary (same model, same sections)
    mirror = compare_documents(new, TEXT, summarizer, cache_dir)
    assert mirror["summaries"]["generated"] == 0
    a = {r["new"]["heading_path"]: r for r in first["sections"] if r["status"] == "edited"}
    b = {r["old"]["heading_path"]: r for r in mirror["sections"] if r["status"] == "edited"}
    assert [a[k]["new_summary"] for k in a] == [b[k]["old_summary"] for k in a]


def test_a_section_cut_into_parts_is_summarized_part_by_part(summarizer, tmp_path: Path) -> None:
    from summ_assets.serving import Summarizer
    from summ_assets.serving.compare import compare_documents

    prof = summarizer.profile
    small = dataclasses.replace(
        prof, data=dataclasses.replace(prof.data, max_section_tokens=40, min_section_tokens=4)
    )
    with Summarizer(summarizer.path, profile=small) as s:
        new = TEXT.replace("768차원", "1024차원")
        parts = [x for x in s.chunk(new) if x.heading_path == f"{ROOT} / 임베딩"]
        assert len(parts) > 1
        r = compare_documents(TEXT, new, s, tmp_path / "c")
        [row] = [x for x in r["sections"] if x["status"] == "edited"]
        assert row["new"]["char_end"] - row["new"]["char_start"] == sum(len(x.text) for x in parts)
        # both versions, each part once (the parts that did not change are shared by both versions)
        old_parts = [x for x in s.chunk(TEXT) if x.heading_path == f"{ROOT} / 임베딩"]
        distinct = {x.text for x in parts} | {x.text for x in old_parts}
        assert r["summaries"]["generated"] == len(distinct)


# ------------------------------------------------------------------------------------------- API


def _client(summarizer, cache: Path, **kw):
    from fastapi.testclient import TestClient

    from summ_assets.serving import create_app
    from summ_assets.serving.compare import SummaryCache

    app = create_app(summarizer, **kw)
    app.state.summary_cache = SummaryCache(cache)
    return TestClient(app)


def test_api_compare(summarizer, tmp_path: Path) -> None:
    new = edited_version()
    with _client(summarizer, tmp_path / "cache") as c:
        r = c.post("/compare", json={"old": TEXT, "new": new})
        assert r.status_code == 200, r.text
        data = r.json()
        assert (
            data["counts"]["edited"] == 1 and data["counts"]["added"] == 1 and data["counts"]["removed"] == 1
        )
        assert data["summaries"]["generated"] == 4 and data["model"] == str(summarizer.path)
        # NEW's order (보안 주의 added before 재순위화); 평가 removed where it stood, after 생성
        assert [s["status"] for s in data["sections"]] == [
            "unchanged", "unchanged", "unchanged", "edited", "unchanged", "unchanged", "added", "unchanged",
            "unchanged", "removed", "unchanged",
        ]  # fmt: skip
        again = c.post("/compare", json={"old": TEXT, "new": new}).json()
        assert again["summaries"] == {**data["summaries"], "generated": 0, "cached": 4}
        same = c.post("/compare", json={"old": TEXT, "new": TEXT}).json()
        assert same["counts"]["unchanged"] == 10 and same["summaries"]["generated"] == 0


def test_api_compare_bad_input_gets_the_summarize_errors(summarizer, tmp_path: Path) -> None:
    with _client(summarizer, tmp_path / "cache") as c:
        r = c.post("/compare", content=b"")
        assert r.status_code == 400 and "empty body" in r.json()["error"]
        r = c.post("/compare", content=b'{"old": ', headers={"content-type": "application/json"})
        assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
        r = c.post("/compare", content=b'{"old": "\xff"}')
        assert r.status_code == 400 and r.json()["error"].startswith("request body:1:")
        r = c.post("/compare", json={"old": "x"})
        assert r.status_code == 422 and '"old" and "new"' in r.json()["error"]
        r = c.post("/compare", json=["x", "y"])
        assert r.status_code == 422
        r = c.post("/compare", json={"old": "# a\n\nb.\n", "new": " \n"})
        assert r.status_code == 422 and r.json() == {
            "error": '"new" is empty (only whitespace): nothing to compare'
        }
        r = c.post("/compare", json={"old": "---\ntitle: x\n본문\n", "new": "# a\n"})
        assert r.status_code == 422 and r.json()["error"].startswith("old:1: front matter")
    with _client(summarizer, tmp_path / "cache", max_bytes=4096) as c:
        r = c.post("/compare", json={"old": TEXT, "new": TEXT})
        assert r.status_code == 413 and "exceeds the limit of 4,096 bytes" in r.json()["error"]
    with _client(summarizer, tmp_path / "cache", timeout_s=1e-6) as c:
        r = c.post("/compare", json={"old": TEXT, "new": edited_version()})
        assert r.status_code == 504 and "comparison not ready" in r.json()["error"]
