from __future__ import annotations

import os
from pathlib import Path

import pytest

from summ_assets.core.documents import (
    DocumentError,
    discover,
    partition_key,
    read_document,
    unsupported_files,
)


def _write(root: Path, rel: str, data: bytes) -> str:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return rel


def test_partition_keys_are_stable_safe_and_collision_free() -> None:
    a, b = partition_key("raw/a b.md"), partition_key("raw/a_b.md")
    assert a != b and partition_key("raw/a b.md") == a
    for key in (a, b, partition_key("raw/../../etc/passwd"), partition_key("raw/한글,문서.md")):
        assert "," not in key and "/" not in key and ".." not in key.split("-")[0].strip(".")[:0] + key[:0]


def test_utf8_bom_and_crlf_are_accepted(tmp_path: Path) -> None:
    rel = _write(tmp_path, "raw/bom.md", "\ufeff# 제목\r\n\r\n본문\r\n".encode())
    doc = read_document(tmp_path, rel)
    assert doc.had_bom and doc.newline == "\r\n" and doc.text.startswith("# 제목")


@pytest.mark.parametrize(
    ("rel", "data", "match"),
    [
        ("raw/empty.md", b"", "file is empty"),
        ("raw/blank.md", b"  \n\n", "no text"),
        ("raw/binary.md", b"\x89PNG\r\n\x1a\n\x00\x00\x00", "looks binary"),
        (
            "raw/latin1.md",
            "# 제목\n\ncafé".encode()[:-2] + b"\xe9\n",
            r"latin1.md:3:\d+: invalid UTF-8",
        ),
        ("raw/table.csv", b"a,b\n", "unsupported extension"),
    ],
)
def test_bad_files_get_a_clear_error_naming_the_file(
    tmp_path: Path, rel: str, data: bytes, match: str
) -> None:
    _write(tmp_path, rel, data)
    with pytest.raises(DocumentError, match=match) as exc:
        read_document(tmp_path, rel)
    assert rel.split("/")[-1] in str(exc.value)


def test_file_over_the_size_limit(tmp_path: Path) -> None:
    rel = _write(tmp_path, "raw/big.md", b"# x\n" + b"a" * 5000)
    with pytest.raises(DocumentError, match="exceeds the size limit of 1,000 bytes"):
        read_document(tmp_path, rel, max_bytes=1000)


def test_symlink_leaving_data_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "secret.md"
    outside.write_text("# secret\n")
    (tmp_path / "data" / "raw").mkdir(parents=True)
    os.symlink(outside, tmp_path / "data" / "raw" / "link.md")
    with pytest.raises(DocumentError, match="symlink points outside the data folder"):
        read_document(tmp_path / "data", "raw/link.md")


def test_deleted_file_and_path_traversal(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match="file is gone"):
        read_document(tmp_path, "raw/gone.md")
    with pytest.raises(DocumentError, match="escapes the data folder"):
        read_document(tmp_path, "raw/../../etc/passwd.md")


def test_discover_lists_supported_files_per_source(tmp_path: Path) -> None:
    _write(tmp_path, "raw/a.md", b"# a\n")
    _write(tmp_path, "raw/sub/b.txt", b"b\n")
    _write(tmp_path, "raw/c.pdf", b"%PDF")
    _write(tmp_path, "eval/new/d.md", b"# d\n")
    _write(tmp_path, "labels/x.jsonl", b"{}\n")
    found = discover(tmp_path)
    assert sorted(found.values()) == ["eval/new/d.md", "raw/a.md", "raw/sub/b.txt"]
    assert unsupported_files(tmp_path) == ["raw/c.pdf"]


def test_the_pool_cap_takes_the_lowest_ranked_pages_and_raising_it_only_adds(tmp_path: Path) -> None:
    from summ_assets.core.documents import pool_rank_key

    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "a.md").write_text("# A\n\ntext\n", encoding="utf-8")
    (tmp_path / "pool" / "site").mkdir(parents=True)
    names = [f"pool/site/p{i}.md" for i in range(7)]
    for n in names:
        (tmp_path / n).write_text("# P\n\ntext\n", encoding="utf-8")
    every = set(discover(tmp_path).values())
    assert every == {"raw/a.md", *names}
    assert set(discover(tmp_path, pool_documents=0).values()) == {"raw/a.md"}
    three = set(discover(tmp_path, pool_documents=3).values()) - {"raw/a.md"}
    assert three == set(sorted(names, key=pool_rank_key)[:3])
    assert three < set(discover(tmp_path, pool_documents=5).values())
    assert set(discover(tmp_path, pool_documents=99).values()) == every


def test_pool_pages_are_unlabelled_training_material_never_val_or_test() -> None:
    from summ_assets.core.dataset import split_rows
    from summ_assets.core.profiles import DEMO
    from summ_assets.core.splits import is_eval_document

    sections = [
        {"doc_id": d, "heading_path": f"H{i}", "part": 0, "section_id": f"{d}{i}", "text": "본문"}
        for d in ("raw/a.md", "raw/b.md", "pool/site/x.md")
        for i in range(3)
    ]
    from summ_assets.core.labels import Label

    labels = {
        s["section_id"]: Label(s["doc_id"], s["heading_path"], "요약이다.", "labels.jsonl", i + 1)
        for i, s in enumerate(sections)
        if s["doc_id"].startswith("raw/")
    }
    assert not is_eval_document("pool/site/x.md")
    by = split_rows(sections, labels, DEMO.data)
    pool_rows = [r for s, rows in by.items() for r in rows if r["doc_id"].startswith("pool/")]
    assert pool_rows and all(r in by["unlabelled"] for r in pool_rows)
