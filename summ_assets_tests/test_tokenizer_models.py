from __future__ import annotations

from pathlib import Path

import pytest

from summ_assets.core.prompts import encode_example, encode_prompt
from summ_assets_tests.helpers import tiny_models, tiny_tokenizer


def test_tokenizer_round_trips_korean_and_has_gemma_specials() -> None:
    tok = tiny_tokenizer()
    for text in ["RAG 시스템은 세 단계로 구성된다.", "똠방각하 café 🙂", "x = 1  # comment"]:
        assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    assert (tok.pad_token_id, tok.eos_token_id, tok.bos_token_id) == (0, 1, 2)
    assert tok.convert_tokens_to_ids("<end_of_turn>") == 5


def test_chat_template_prompt_is_prefix_and_ends_with_end_of_turn() -> None:
    tok = tiny_tokenizer()
    ids, start = encode_example(tok, "섹션 본문입니다.", "요약이다.", max_tokens=64)
    assert ids[:start] == encode_prompt(tok, "섹션 본문입니다.", 64)
    assert ids[-1] == tok.convert_tokens_to_ids("<end_of_turn>")
    assert tok.decode(ids[start:], skip_special_tokens=True).strip() == "요약이다."
    text = tok.apply_chat_template(
        [{"role": "user", "content": "다음 내용을 요약해줘: x"}], tokenize=False, add_generation_prompt=True
    )
    assert text == "<bos><start_of_turn>user\n다음 내용을 요약해줘: x<end_of_turn>\n<start_of_turn>model\n"


def test_chat_template_rejects_unknown_roles() -> None:
    tok = tiny_tokenizer()
    with pytest.raises(Exception, match="unsupported role"):
        tok.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)


def test_tiny_models_share_tokenizer_teacher_is_bigger_and_loads_like_users_expect() -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from summ_assets.core.models import count_parameters, tokenizer_fingerprint

    t_dir, s_dir = tiny_models()
    t = AutoModelForCausalLM.from_pretrained(t_dir, dtype=torch.float32)
    s = AutoModelForCausalLM.from_pretrained(s_dir, dtype=torch.float32)
    assert count_parameters(t) > 2 * count_parameters(s)
    assert t.config.num_hidden_layers > s.config.num_hidden_layers
    assert tokenizer_fingerprint(AutoTokenizer.from_pretrained(t_dir)) == tokenizer_fingerprint(
        AutoTokenizer.from_pretrained(s_dir)
    )


def test_depth_pruning_keeps_requested_layers_and_runs(tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from summ_assets.core.models import parse_layers, prune_layers

    t_dir, _ = tiny_models()
    info = prune_layers(t_dir, tmp_path / "p", "0,2")
    assert info["kept_layers"] == [0, 2] and info["base_layers"] == 3
    m = AutoModelForCausalLM.from_pretrained(tmp_path / "p", dtype=torch.float32)
    assert m.config.num_hidden_layers == 2 and len(m.config.layer_types) == 2
    out = m.generate(torch.tensor([[2, 10, 11]]), max_new_tokens=3, do_sample=False)
    assert out.shape[1] >= 4
    assert parse_layers("every:2", 18) == list(range(0, 18, 2))
    with pytest.raises(ValueError, match="layers must be in 0..2"):
        parse_layers("0,5", 3)


def test_attention_is_eager_only_where_logits_are_soft_capped(tmp_path: Path) -> None:
    """A Gemma 3 shape (no attention soft-capping) loads with the library's SDPA and computes what eager
    attention computes on a left-padded batch (same logits at real positions, same greedy tokens);
    the tiny Gemma 2 models (soft-capped) load eager."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from summ_assets.core.models import load_causal_lm

    tok = tiny_tokenizer()
    teacher, _ = tiny_models()
    assert load_causal_lm(teacher).config._attn_implementation == "eager"

    cfg = Gemma3TextConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=16,
        sliding_window=8,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
        max_position_embeddings=256,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )
    torch.manual_seed(0)
    Gemma3ForCausalLM(cfg).save_pretrained(tmp_path / "g3")
    model = load_causal_lm(tmp_path / "g3")
    assert model.config._attn_implementation == "sdpa"

    tok.padding_side = "left"
    try:
        enc = tok(
            ["짧은 글.", "RAG 시스템은 세 단계로 구성된다. 검색, 결합, 생성."],
            return_tensors="pt",
            padding=True,
        )
    finally:
        tok.padding_side = "right"
    real = enc["attention_mask"].bool()
    got = {}
    for impl in ("eager", "sdpa"):
        model.config._attn_implementation = impl
        with torch.no_grad():
            logits = model(**enc).logits[real]
            tokens = model.generate(**enc, max_new_tokens=12, do_sample=False, pad_token_id=0)
        got[impl] = (logits, tokens)
    assert torch.allclose(got["eager"][0], got["sdpa"][0], atol=1e-4)
    assert torch.equal(got["eager"][1], got["sdpa"][1])
