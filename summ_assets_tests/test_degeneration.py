"""The degeneration checks and the one-sentence cut, on crafted strings."""

from __future__ import annotations

import pytest

from summ_assets.core.degeneration import flags, is_degenerate, shares
from summ_assets.core.sentence_cut import final_summary, first_sentence_end


@pytest.mark.parametrize(
    ("text", "flag"),
    [
        ("… 컴포넌트는 10000000000000000000000000000", "digit_run"),
        ("0.000로 구성하며, 0.000로 구성하며, 0.000로 구성하며 끝", "phrase_loop"),
        ("데이터를 저장 한다 그리고 데이터를 저장 한다 또 데이터를 저장 한다", "repeated_3gram"),
        ('설정은 {{< tooltip text="요청 제한" >}} 으로 한다.', "markup"),
        ("주석 <!-- 메모 --> 이 남았다.", "markup"),
        ("링크는 [문서](https://x) 에 있다.", "markup"),
        ("첫 줄의 요약 문장이다\n둘째 줄", "line_break"),
        ("캐시는 응답 시간을 줄인다. 그러나 일관성 문제가 생긴다.", "multi_sentence"),
        ("HAVING, WHERE, WHERE, ROWS, ROWS, ORDER BY, ROWS, 10", "comma_loop"),
        ("User, Entity, Name, Date, Date, Time, Date, Price", "comma_loop"),
        ("가중치 감쇠는 AdamW의 weight_decay 0.01 5 5 10 5 20 5 이다", "word_repeat"),
        ("롤러 롤 롤 Argo CD 롤 로드 롤 배포", "word_repeat"),
        ("설정은 <i>강조</i> 로 끝난다", "html_tag"),
        ("줄바꿈 태그 <br/> 가 남았다", "html_tag"),
    ],
)
def test_each_check_catches_its_case(text: str, flag: str) -> None:
    got = flags(text)
    assert got[flag], got
    assert is_degenerate(text)


@pytest.mark.parametrize(
    "text",
    [
        "캐시는 자주 읽는 데이터를 메모리에 두어 응답 시간을 줄인다.",
        "버전 3.2.0은 2024-09-10에 출시되었고 예산 기능을 추가했다.",  # decimals and dates are no sentence ends
        "1. 설치 단계는 패키지 설치와 설정 확인으로 이루어진다.",  # a list number is not a sentence
        "The rollout went from 10% to 100% over three days, e.g. on iOS first.",
        "전화번호 010-1234-5678 로 연락한다.",  # 4-digit groups: no run of 8
        # English function words may repeat; a placeholder in angle brackets or inline code is no tag
        "The controller restarts the pod when the probe fails and the node keeps the volume.",
        "매니페스트는 apps/<service>/base 와 overlays/<env> 로 나누어 Kustomize로 관리한다.",
        "플래그 이름은 `<team>.<type>.<feature>` 형식의 소문자 케밥 표기를 따른다.",
        "지표는 정확도, 재현율, 지연 시간으로 정하고 각 지표의 목표를 둔다.",  # a list without repeats
    ],
)
def test_clean_one_sentence_summaries_pass(text: str) -> None:
    assert not any(flags(text).values()), flags(text)


def test_one_sentence_cut_and_single_line() -> None:
    assert final_summary("첫 문장은 이것이다.\n두 번째 문장이다.") == "첫 문장은 이것이다."
    assert final_summary("줄이\n나뉜 한 문장이다.") == "줄이 나뉜 한 문장이다."
    assert final_summary("끝나지 않는 문장") == "끝나지 않는 문장"
    assert (
        final_summary("A. B. 그리고 긴 첫 문장이 여기서 끝난다. 다음.")
        == "A. B. 그리고 긴 첫 문장이 여기서 끝난다."
    )
    assert final_summary("두 문장. 이다.", one_sentence=False) == "두 문장. 이다."
    assert first_sentence_end("짧다.") is None  # under MIN_SENTENCE visible characters: not a sentence


def test_shares_count_empty_apart() -> None:
    sh = shares(["", "정상적인 요약 문장 하나이다.", "반복 반복 문구 반복 반복 문구 반복 반복 문구"])
    assert sh["n"] == 3 and sh["empty"] == 1
    assert sh["degenerate"] == 0.5 and sh["repeated_3gram"] == 0.5
    assert shares([])["degenerate"] == 0.0


def test_a_period_glued_to_hangul_ends_a_sentence() -> None:
    assert flags("설정은 헬름 값 파일로 조정한다.러는 720h로 갱신을 시작한다.")["multi_sentence"]
    assert final_summary("설정은 헬름 값 파일로 조정한다.러는 720h로") == "설정은 헬름 값 파일로 조정한다."
    assert not flags("버전 2.8.0은 인물 보정 도구를 추가했다.")["multi_sentence"]


def test_the_ngram_ban_covers_generated_tokens_only() -> None:
    import torch
    from transformers import NoRepeatNGramLogitsProcessor

    from summ_assets.core.decoding import generated_no_repeat

    prompt, generated = [5, 6, 8, 9], [5, 6, 7, 1, 5, 6]
    ids = torch.tensor([prompt + generated])
    scores = torch.zeros(1, 12)
    ours = generated_no_repeat(len(prompt), 3)(ids, scores.clone())
    library = NoRepeatNGramLogitsProcessor(3)(ids, scores.clone())
    assert torch.isinf(ours[0, 7]) and not torch.isinf(ours[0, 8])  # "5 6 7" repeats; quoting "5 6 8" may
    assert torch.isinf(library[0, 8])  # the library's own ban would forbid quoting the prompt


def test_a_model_without_a_set_is_left_out_of_that_sets_degeneration_row() -> None:
    """Regression: under the sample scope the teacher generates no val rows; the table counted its 47
    missing val outputs as 47 empty ones instead of leaving the teacher out of val."""
    from summ_assets.core.report import degeneration_table

    sets = {"val": [{"section_id": "a"}, {"section_id": "b"}], "test_new": [{"section_id": "c"}]}
    final = {
        "student": {
            ("val", "a"): "짧은 요약이다.",
            ("val", "b"): "다른 요약이다.",
            ("test_new", "c"): "요약.",
        },
        "teacher": {("test_new", "c"): "요약이다."},
    }
    table = degeneration_table(final, final, sets)
    assert set(table["val"]) == {"student"} and set(table["test_new"]) == {"student", "teacher"}
    assert table["val"]["student"]["final"]["empty"] == 0


def test_the_cut_is_hashed_into_the_prompt_version_and_the_checks_are_not() -> None:
    """A new degeneration check re-scores stored generations; a changed cut re-runs what trains."""
    import inspect

    from summ_assets.core import degeneration, prompts, sentence_cut

    version = prompts.prompt_version()
    src = inspect.getsource(prompts.prompt_version)
    assert "sentence_cut" in src and "degeneration" not in src.split('"""')[-1]
    assert degeneration.first_sentence_end is sentence_cut.first_sentence_end
    assert version == prompts.prompt_version()


def test_toggling_the_cut_keeps_the_generation_store_key() -> None:
    """The cut is applied when stored generations are read, so it is not part of the store's key."""
    import dataclasses

    from summ_assets.core.generation_store import decoding_settings
    from summ_assets.core.profiles import PROFILES

    demo = PROFILES["demo"]
    off = dataclasses.replace(demo, eval=dataclasses.replace(demo.eval, one_sentence=False))
    assert decoding_settings(demo) == decoding_settings(off)
    longer = dataclasses.replace(demo, eval=dataclasses.replace(demo.eval, max_new_tokens=80))
    assert decoding_settings(demo) != decoding_settings(longer)
