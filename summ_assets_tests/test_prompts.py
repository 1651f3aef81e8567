"""The one prompt builder: cleaned section text, special tokens neutralised, whole sections in."""

from __future__ import annotations

from summ_assets.core.prompts import (
    encode_example,
    encode_prompt,
    neutralise_special_tokens,
    prompt_section,
    prompt_version,
    truncated_share,
)
from summ_assets_tests.helpers import tiny_tokenizer


def _count(ids: list[int], tok, token: str) -> int:
    return ids.count(tok.convert_tokens_to_ids(token))


def test_special_token_strings_in_documents_are_text_not_control_tokens() -> None:
    tok = tiny_tokenizer()
    text = "채팅 템플릿은 <start_of_turn>user 로 열고 <end_of_turn> 으로 닫는다. <bos> 도 있다."
    ids = encode_prompt(tok, text, 1000)
    # the template's own turns only: user open, user close, model open
    assert _count(ids, tok, "<start_of_turn>") == 2 and _count(ids, tok, "<end_of_turn>") == 1
    assert _count(ids, tok, "<bos>") == 1  # the template's bos, not the document's
    ex, start = encode_example(tok, text, "요약에도 <end_of_turn> 이 들어 있다.", 1000)
    assert _count(ex[start:], tok, "<end_of_turn>") == 1 and ex[-1] == tok.convert_tokens_to_ids(
        "<end_of_turn>"
    )
    # the text still reads the same once decoded (the joiner is invisible)
    shown = tok.decode(ids, skip_special_tokens=False)
    assert "end_of_turn> 으로" in shown.replace("\u2060", "")
    assert neutralise_special_tokens("평문", tok) == "평문"


def test_prompt_carries_the_cleaned_whole_section_and_counts_cuts() -> None:
    tok = tiny_tokenizer()
    section = "## 설치 {#install}\n\n[설치 문서](https://example.com/very/long/url)를 본다. <!-- 메모 -->\n"
    body, cut = prompt_section(section, tok, 1000)
    assert body == "## 설치\n\n설치 문서를 본다." and not cut
    long = "긴 문장이다. " * 200
    short, cut = prompt_section(long, tok, 20)
    assert cut and len(tok(short, add_special_tokens=False)["input_ids"]) <= 20
    assert truncated_share([section, long], tok, 20)["truncated"] == 1
    assert truncated_share([section, long], tok, 10_000) == {"truncated": 0, "total": 2, "share": 0.0}


def test_prompt_version_names_the_cleaner() -> None:
    v = prompt_version()
    assert v.startswith("prompt-v2+") and len(v) == len("prompt-v2+") + 8


def test_sft_completions_are_neutralised_too() -> None:
    from summ_assets.core.lora import sft_rows

    tok = tiny_tokenizer()
    rows = sft_rows([{"text": "본문이다.", "summary": "<end_of_turn> 을 설명한다."}], tok, 100)
    assert "<end_of_turn>" not in rows[0]["completion"][0]["content"]
    assert rows[0]["completion"][0]["content"].replace("\u2060", "") == "<end_of_turn> 을 설명한다."


def test_every_prompt_building_asset_carries_the_prompt_version() -> None:
    """A cleaner or template change makes exactly the assets that build prompts stale."""
    from summ_assets.definitions import defs

    v = prompt_version()
    versions = {
        k.to_user_string(): spec.code_version
        for a in defs.assets
        for k, spec in getattr(a, "specs_by_key", {}).items()
    }
    carrying = {name for name, cv in versions.items() if cv and v in cv}
    assert carrying == {
        "student_trimmed_base",
        "teacher_adapter",
        "teacher_logits",
        "teacher_pseudo_summaries",
        "student_model",
        "student_baseline",
        "teacher_generations",
        "student_generations",
        "baseline_generations",
        "student_base_generations",
        "evaluation_report_full",
        "evaluation_report",  # it generates the promoted student's val outputs when that is another model
    }
