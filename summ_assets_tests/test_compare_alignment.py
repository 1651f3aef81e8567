"""Section alignment and the one-line change (core.alignment, core.change_summary) on crafted version
pairs with known edits: every status and flag, real-world Markdown, mirror symmetry, row order. No model."""

from __future__ import annotations

import pytest

from summ_assets.core.alignment import Alignment, align_documents
from summ_assets.core.change_summary import describe_change
from summ_assets.serving.compare import compare_documents

BASE = """---
title: 배포 가이드
tags: [deploy]
---
# 배포 가이드

이 문서는 서비스 배포 절차를 설명한다. 모든 배포는 승인 후 진행한다.

## 준비 {#prep}

배포 전에 테스트를 모두 통과해야 한다. 릴리스 노트는 팀 위키에 작성한다.
배포 창은 화요일과 목요일 오후 2시다. 변경 요청서는 하루 전에 올린다.

## 빌드와 {{< glossary_tooltip text="이미지" term_id="image" >}}

빌드는 CI에서만 한다. 이미지 태그는 커밋 해시를 쓴다. 로컬 빌드 이미지는 배포하지 않는다.

## 롤백

문제가 생기면 이전 버전으로 즉시 되돌린다. 롤백 판단은 당직자가 10분 안에 내린다.
되돌린 뒤에는 원인을 장애 기록에 남긴다.

## 모니터링

배포 후 30분 동안 오류율을 지켜본다. 오류율이 1%를 넘으면 경보가 울린다. 대시보드는 Grafana에서 본다.

## 참고

{{< note >}}
관련 문서는 운영 위키의 배포 항목에 있다. 질문은 플랫폼 팀 채널에 남긴다.
{{< /note >}}
"""

ROOT = "배포 가이드"


def section(text: str, heading: str) -> str:
    """The raw text of the section that starts at `heading` (up to the next `## `)."""
    start = text.index(heading)
    end = text.find("\n## ", start + 1)
    return text[start : end + 1 if end >= 0 else len(text)]


def rows(al: Alignment) -> list[tuple[str, str | None, str | None, bool, bool]]:
    return [
        (
            p.status,
            p.old.heading_path if p.old else None,
            p.new.heading_path if p.new else None,
            p.heading_changed,
            p.moved,
        )
        for p in al.pairs
    ]


def statuses(al: Alignment) -> dict[str, str]:
    """heading path (new side, else old) -> status."""
    return {(p.new or p.old).heading_path: p.status for p in al.pairs}


def test_same_document_is_all_unchanged() -> None:
    al = align_documents(BASE, BASE)
    assert [p.status for p in al.pairs] == ["unchanged"] * 6
    assert not any(p.heading_changed or p.moved for p in al.pairs)
    assert al.counts == {
        "unchanged": 6,
        "edited": 0,
        "added": 0,
        "removed": 0,
        "heading_changed": 0,
        "moved": 0,
        "old_sections": 6,
        "new_sections": 6,
    }
    assert not al.front_matter_changed
    # offsets are into the raw input, front matter included
    first = al.pairs[0].new
    assert first is not None and BASE[first.char_start :].startswith("# 배포 가이드")
    assert al.pairs[-1].new.char_end == len(BASE)


def test_edited_section_and_its_change_line() -> None:
    new = BASE.replace("당직자가 10분 안에", "당직자가 5분 안에")
    result = compare_documents(BASE, new)
    edited = [r for r in result["sections"] if r["status"] == "edited"]
    assert len(edited) == 1 and edited[0]["new"]["heading_path"] == f"{ROOT} / 롤백"
    assert edited[0]["change"] == "1 sentence changed; numbers: 10분 → 5분"
    assert result["counts"]["unchanged"] == 5 and result["counts"]["edited"] == 1
    assert edited[0]["old_summary"] is None and edited[0]["new_summary"] is None  # no model
    assert result["model"] is None and result["summaries"]["generated"] == 0


def test_added_section_moves_nothing() -> None:
    extra = "## 승인\n\n배포 승인은 팀장이 한다. 긴급 배포는 사후 승인을 받는다.\n\n"
    new = BASE.replace("## 롤백", extra + "## 롤백")
    al = align_documents(BASE, new)
    assert statuses(al)[f"{ROOT} / 승인"] == "added"
    assert al.counts["added"] == 1 and al.counts["unchanged"] == 6
    assert al.counts["moved"] == 0
    added = next(p for p in al.pairs if p.status == "added")
    assert added.old is None and new[added.new.char_start :].startswith("## 승인")


def test_removed_section_stands_where_it_was_in_old() -> None:
    new = BASE.replace(section(BASE, "## 롤백"), "")
    al = align_documents(BASE, new)
    assert [r[0] for r in rows(al)] == [
        "unchanged",
        "unchanged",
        "unchanged",
        "removed",
        "unchanged",
        "unchanged",
    ]
    removed = al.pairs[3]
    assert removed.new is None and removed.old.heading_path == f"{ROOT} / 롤백"
    assert al.counts["moved"] == 0
    # a removed first section comes first
    al = align_documents(
        BASE,
        BASE.replace(
            "# 배포 가이드\n\n이 문서는 서비스 배포 절차를 설명한다. 모든 배포는 승인 후 진행한다.\n\n", ""
        ),
    )
    assert al.pairs[0].status == "removed" and al.pairs[0].old.heading_path == ROOT


def test_rename_of_an_unedited_section_is_unchanged_with_heading_changed() -> None:
    new = BASE.replace("## 롤백\n", "## 롤백 절차\n")
    al = align_documents(BASE, new)
    pair = next(p for p in al.pairs if p.heading_changed)
    assert (pair.status, pair.old.title, pair.new.title, pair.moved) == (
        "unchanged",
        "롤백",
        "롤백 절차",
        False,
    )
    assert al.counts["heading_changed"] == 1 and al.counts["unchanged"] == 6
    change = compare_documents(BASE, new)["sections"][3]["change"]
    assert change == "renamed: 롤백 → 롤백 절차"


def test_renamed_and_edited() -> None:
    new = BASE.replace("## 모니터링\n", "## 배포 후 관찰\n").replace("30분 동안", "1시간 동안")
    al = align_documents(BASE, new)
    pair = next(p for p in al.pairs if p.heading_changed)
    assert pair.status == "edited" and pair.old.title == "모니터링" and pair.new.title == "배포 후 관찰"


def test_moved_section_is_the_one_that_moved() -> None:
    mon = section(BASE, "## 모니터링")
    new = BASE.replace(mon, "").replace("## 준비", mon + "## 준비")
    al = align_documents(BASE, new)
    moved = [p for p in al.pairs if p.moved]
    assert len(moved) == 1 and moved[0].new.title == "모니터링" and moved[0].status == "unchanged"
    # rows follow NEW's order
    assert [p.new.title for p in al.pairs][:3] == [ROOT, "모니터링", "준비"]


def test_flags_combine_edited_renamed_moved() -> None:
    mon = section(BASE, "## 모니터링")
    changed = mon.replace("## 모니터링", "## 관찰").replace("1%를", "2%를")
    new = BASE.replace(mon, "").replace("## 준비", changed + "## 준비")
    al = align_documents(BASE, new)
    [p] = [p for p in al.pairs if p.moved or p.heading_changed]
    assert (p.status, p.heading_changed, p.moved) == ("edited", True, True)
    line = compare_documents(BASE, new)["sections"][1]["change"]
    assert line == "renamed: 모니터링 → 관찰; moved; 1 sentence changed; numbers: 1%를 → 2%를"


def test_front_matter_change_is_reported_apart() -> None:
    new = BASE.replace("tags: [deploy]", "tags: [deploy, ops]")
    al = align_documents(BASE, new)
    assert al.front_matter_changed and al.counts["unchanged"] == 6
    # offsets shift with the longer front matter
    assert al.pairs[0].new.char_start == al.pairs[0].old.char_start + len(", ops")


def test_markup_that_renders_the_same_is_unchanged() -> None:
    new = (
        BASE.replace("## 준비 {#prep}", "## 준비 {#preparation .important}")  # heading attributes
        .replace("{{< note >}}", "{{% note %}}")  # another shortcode, same visible text
        .replace("{{< /note >}}", "{{% /note %}}")
        # a re-wrapped paragraph
        .replace("통과해야 한다. 릴리스 노트는", "통과해야 한다.\n릴리스 노트는")
    )
    new = new.replace("빌드는 CI에서만 한다.", "빌드는 CI에서만 한다. <!-- 검토: 2024 -->")  # a comment
    al = align_documents(BASE, new)
    assert [p.status for p in al.pairs] == ["unchanged"] * 6
    assert not any(p.heading_changed for p in al.pairs)
    # the shortcode title resolves to its visible text in the heading path
    assert al.pairs[2].new.heading_path == f"{ROOT} / 빌드와 이미지"


def test_windows_line_endings_are_unchanged() -> None:
    al = align_documents(BASE, BASE.replace("\n", "\r\n"))
    assert [p.status for p in al.pairs] == ["unchanged"] * 6


def test_heading_level_change_is_neither_rename_nor_edit() -> None:
    new = BASE.replace("## 모니터링", "### 모니터링")  # now a subsection of 롤백
    al = align_documents(BASE, new)
    pair = next(p for p in al.pairs if p.new and p.new.title == "모니터링")
    assert pair.status == "unchanged" and not pair.heading_changed and not pair.moved
    assert (pair.old.heading_path, pair.new.heading_path) == (
        f"{ROOT} / 모니터링",
        f"{ROOT} / 롤백 / 모니터링",
    )
    assert (pair.old.level, pair.new.level) == (2, 3)
    row = next(r for r in compare_documents(BASE, new)["sections"] if r["new"]["level"] == 3)
    assert row["change"] == "heading level 2 → 3"
    assert row["old"]["level"] == 2


def test_split_section_best_part_is_edited_the_rest_added() -> None:
    prep = section(BASE, "## 준비")
    split = prep.replace("배포 창은", "### 일정\n\n배포 창은")
    new = BASE.replace(prep, split)
    al = align_documents(BASE, new)
    st = statuses(al)
    assert st[f"{ROOT} / 준비"] == "edited"
    assert st[f"{ROOT} / 준비 / 일정"] == "added"
    assert al.counts == {**al.counts, "edited": 1, "added": 1, "removed": 0, "moved": 0}
    # merged back: the mirror (the best-matching one edited, the other removed)
    back = align_documents(new, BASE)
    st = statuses(back)
    assert st[f"{ROOT} / 준비"] == "edited" and st[f"{ROOT} / 준비 / 일정"] == "removed"


def test_folded_heading_gains_an_intro() -> None:
    old = "# 제목\n## 개요\n\n개요 문장이다. 두 번째 문장이다.\n\n## 끝\n\n마지막 절이다.\n"
    new = "# 제목\n\n새 소개 문단이다.\n\n## 개요\n\n개요 문장이다. 두 번째 문장이다.\n\n## 끝\n\n마지막 절이다.\n"
    al = align_documents(old, new)
    assert rows(al) == [
        ("added", None, "제목", False, False),
        ("unchanged", "제목 / 개요", "제목 / 개요", False, False),
        ("unchanged", "제목 / 끝", "제목 / 끝", False, False),
    ]


def test_completely_rewritten_section_under_a_new_heading_is_removed_and_added() -> None:
    roll = section(BASE, "## 롤백")
    other = (
        "## 비용\n\n클라우드 비용은 매달 검토한다. 예약 인스턴스를 우선 쓴다. 태그가 없는 자원은 지운다.\n\n"
    )
    al = align_documents(BASE, BASE.replace(roll, other))
    st = statuses(al)
    assert st[f"{ROOT} / 롤백"] == "removed" and st[f"{ROOT} / 비용"] == "added"


def test_duplicate_sections_stay_in_order() -> None:
    dup = "## 예시\n\n같은 예시 문단이다. 두 번 나온다.\n\n"
    doc = "# 문서\n\n소개.\n\n" + dup + "## 중간\n\n중간 절이다.\n\n" + dup
    al = align_documents(doc, doc)
    assert [p.status for p in al.pairs] == ["unchanged"] * 4 and not any(p.moved for p in al.pairs)
    assert [(p.old.index, p.new.index) for p in al.pairs] == [(0, 0), (1, 1), (2, 2), (3, 3)]


def test_empty_side_is_all_added_or_all_removed() -> None:
    assert [p.status for p in align_documents("", BASE).pairs] == ["added"] * 6
    assert [p.status for p in align_documents(BASE, "").pairs] == ["removed"] * 6
    assert align_documents("", "").pairs == []


def _composite(text: str) -> str:
    mon = section(text, "## 모니터링")
    out = text.replace(mon, "").replace("## 빌드", mon + "## 빌드")  # moved
    out = out.replace(section(out, "## 참고"), "")  # removed
    out = out.replace("## 롤백\n", "## 되돌리기\n")  # renamed
    out = out.replace("하루 전에", "이틀 전에")  # edited
    return out + "## 연락처\n\n당직 번호는 사내 전화번호부에 있다. 야간에는 호출기를 쓴다.\n"  # added


def test_mirror_swaps_added_and_removed_and_keeps_pairs() -> None:
    new = _composite(BASE)
    ab, ba = align_documents(BASE, new), align_documents(new, BASE)
    swap = {"added": "removed", "removed": "added", "edited": "edited", "unchanged": "unchanged"}
    pairs_ab = {(p.old.index if p.old else None, p.new.index if p.new else None): p for p in ab.pairs}
    pairs_ba = {(p.new.index if p.new else None, p.old.index if p.old else None): p for p in ba.pairs}
    assert set(pairs_ab) == set(pairs_ba)
    for key, p in pairs_ab.items():
        q = pairs_ba[key]
        assert q.status == swap[p.status]
        assert q.heading_changed == p.heading_changed
    assert ab.counts["added"] == ba.counts["removed"] == 1
    assert ab.counts["removed"] == ba.counts["added"] == 1
    assert ab.counts["edited"] == ba.counts["edited"] == 1
    assert sum(p.moved for p in ab.pairs) == sum(p.moved for p in ba.pairs) == 1


def test_composite_rows_in_new_order_with_removed_in_place() -> None:
    al = align_documents(BASE, _composite(BASE))
    assert rows(al) == [
        ("unchanged", ROOT, ROOT, False, False),
        ("edited", f"{ROOT} / 준비", f"{ROOT} / 준비", False, False),
        ("unchanged", f"{ROOT} / 모니터링", f"{ROOT} / 모니터링", False, True),
        ("unchanged", f"{ROOT} / 빌드와 이미지", f"{ROOT} / 빌드와 이미지", False, False),
        ("unchanged", f"{ROOT} / 롤백", f"{ROOT} / 되돌리기", True, False),
        ("removed", f"{ROOT} / 참고", None, False, False),
        ("added", None, f"{ROOT} / 연락처", False, False),
    ]


# ------------------------------------------------------------------------------------- change line


@pytest.mark.parametrize(
    ("old", "new", "line"),
    [
        (
            "가는 3초다. 나는 그대로다.",
            "가는 5초다. 나는 그대로다.",
            "1 sentence changed; numbers: 3초다 → 5초다",
        ),
        ("가는 그대로다.", "가는 그대로다. 새 문장이 붙었다.", "1 sentence added"),
        ("가는 그대로다. 나는 빠진다.", "가는 그대로다.", "1 sentence removed"),
        (
            "모델은 multilingual-e5-base(768차원)를 쓴다. 벡터는 정규화한다.",
            "모델은 bge-m3(1,024차원)를 쓴다. 벡터는 정규화한다. 재색인이 필요하다.",
            "1 sentence added, 1 changed; numbers: 768차원 → 1,024차원; names: multilingual-e5-base → bge-m3",
        ),
        ("담당은 김철수다.", "담당은 이영희다.", "1 sentence changed; names: 김철수다 → 이영희다"),
        ("첫 줄이다.\n둘째 줄이다.", "첫 줄이다.\n\n둘째 줄이다.", "formatting only (same sentences)"),
        ("같다.", "같다.", "no change in the text"),
    ],
)
def test_describe_change(old: str, new: str, line: str) -> None:
    assert describe_change(old, new) == line


def test_describe_change_lists_at_most_three_numbers() -> None:
    old = "값은 1이다. 값은 2이다. 값은 3이다. 값은 4이다. 값은 5이다."
    new = "값은 6이다. 값은 7이다. 값은 8이다. 값은 9이다. 값은 10이다."
    assert (
        describe_change(old, new)
        == "5 sentences changed; numbers: 1이다 → 6이다, 2이다 → 7이다, 3이다 → 8이다 (+2 more)"
    )
