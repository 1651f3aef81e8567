"""The README stays a README for users: short, the two commands up front, every docs/ link alive.

The lab notebook it used to be lives in docs/ (issue 26); these checks keep later changes from
growing it back or leaving a link to a moved or renamed document.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_CHARS = 15_000

# the target of a Markdown link or image: [text](target) / ![alt](target), optional "title" dropped
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _readme() -> str:
    return README.read_text(encoding="utf-8")


def _targets(text: str) -> list[str]:
    return [m.group(1) for m in LINK.finditer(text)]


def _local(target: str) -> str | None:
    """The file part of a relative link (anchor dropped); None for URLs and in-page anchors."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) or target.startswith("#"):
        return None
    return target.split("#", 1)[0]


def test_readme_is_at_most_15000_characters() -> None:
    n = len(_readme())
    assert n <= MAX_CHARS, f"README.md is {n:,} characters (at most {MAX_CHARS:,}): move detail into docs/"


def test_the_two_commands_are_in_the_first_30_lines() -> None:
    head = "\n".join(_readme().splitlines()[:30])
    assert re.search(r"\bmake demo\b", head), "`make demo` must appear in README.md's first 30 lines"
    # `make test` itself, not only `make test-fast`
    assert re.search(r"\bmake test\b(?!-)", head), "`make test` must appear in README.md's first 30 lines"


def test_every_docs_link_in_the_readme_points_to_an_existing_file() -> None:
    docs_links = [
        path
        for path in (_local(t) for t in _targets(_readme()))
        if path is not None and path.startswith("docs/") and path.endswith(".md")
    ]
    assert docs_links, "README.md links to no docs/*.md file"
    missing = sorted({p for p in docs_links if not (ROOT / p).is_file()})
    assert missing == [], f"README.md links to missing files: {missing}"


def test_every_file_the_readme_links_to_exists() -> None:
    """Images (docs/lineage.png) and any other relative link, not only docs/*.md."""
    paths = [p for p in (_local(t) for t in _targets(_readme())) if p]
    missing = sorted({p for p in paths if not (ROOT / p).exists()})
    assert missing == [], f"README.md links to missing paths: {missing}"


def test_relative_links_between_docs_resolve() -> None:
    missing = []
    for doc in sorted(DOCS.glob("*.md")):
        for target in _targets(doc.read_text(encoding="utf-8")):
            path = _local(target)
            if path and not (doc.parent / path).exists():
                missing.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert missing == []
