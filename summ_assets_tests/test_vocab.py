"""Vocabulary trimming (core/vocab.py) on the real tiny BPE tokenizer and a tiny Gemma model."""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from summ_assets.core.chunking import TokenCounter, split_markdown
from summ_assets.core.examples import build_examples
from summ_assets.core.vocab import (
    MAP_FILE,
    KeptVocab,
    VocabError,
    kept_vocab,
    map_teacher_row,
    tokenizer_hash,
    trim_model,
    trim_tokenizer,
)
from summ_assets_tests.helpers import BUNDLED, tiny_models, tiny_tokenizer

_TMP = Path(tempfile.mkdtemp(prefix="summ-vocab-"))


def _rows() -> list[dict]:
    """Sections of bundled documents the tiny tokenizer was not trained on, with a made-up summary."""
    tok = tiny_tokenizer()
    rows = []
    for p in sorted((BUNDLED / "raw").glob("*.md"))[12:20]:
        for s in split_markdown(p.read_text(encoding="utf-8"), TokenCounter(tok), max_tokens=200).sections:
            rows.append(
                {"section_id": s.section_id, "text": s.text, "summary": s.heading_path + "을 요약한다."}
            )
    return rows


@functools.lru_cache(maxsize=1)
def _trimmed() -> tuple[KeptVocab, object, list[dict]]:
    tok = tiny_tokenizer()
    examples = build_examples(_rows(), tok, 256, 32)
    kept = kept_vocab(tok, [e["input_ids"] for e in examples], size=2000)
    trimmed = trim_tokenizer(tok, kept, _TMP / "tok")
    return kept, trimmed, examples


def test_kept_set_is_closed_padded_and_keeps_roles_and_bytes() -> None:
    tok = tiny_tokenizer()
    kept, trimmed, examples = _trimmed()
    assert kept.text_ids < kept.closure <= kept.size == 2000 < len(tok) and not kept.grew
    vocab = set(trimmed.get_vocab())
    assert all(f"<0x{i:02X}>" in vocab for i in range(256))
    for t in ("<pad>", "<bos>", "<eos>", "<unk>", "<start_of_turn>", "<end_of_turn>"):
        assert t in vocab
    spec = json.loads(trimmed.backend_tokenizer.to_str())
    for m in spec["model"]["merges"]:
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        assert a in vocab and b in vocab and a + b in vocab
    # a requested size the closure exceeds grows to the closure; one below the text's own ids fails
    grown = kept_vocab(tok, [e["input_ids"] for e in examples], size=kept.text_ids)
    assert grown.grew and grown.size == grown.closure
    with pytest.raises(VocabError, match="vocab_size 10 is below the"):
        kept_vocab(tok, [e["input_ids"] for e in examples], size=10)


def test_training_examples_tokenize_to_the_same_tokens() -> None:
    tok = tiny_tokenizer()
    kept, trimmed, examples = _trimmed()
    again = build_examples(_rows(), trimmed, 256, 32)
    for full, cut in zip(examples, again, strict=True):
        assert tok.convert_ids_to_tokens(full["input_ids"]) == trimmed.convert_ids_to_tokens(cut["input_ids"])
        assert [kept.old_ids[i] for i in cut["input_ids"]] == full["input_ids"]
        assert cut["completion_start"] == full["completion_start"]


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet=st.characters(codec="utf-8"), max_size=60)
    | st.sampled_from(["똠방각하 漢字 🙂\t\x00", "▁x <end_of_turn>"])
)
def test_any_text_decodes_as_the_full_tokenizer_decodes_it(text: str) -> None:
    tok = tiny_tokenizer()
    kept, trimmed, _ = _trimmed()
    ids = trimmed(text, add_special_tokens=False)["input_ids"]
    assert all(0 <= i < kept.size for i in ids)
    assert trimmed.decode(ids) == tok.decode(tok(text, add_special_tokens=False)["input_ids"])


def test_special_ids_chat_template_and_reload() -> None:
    from transformers import AutoTokenizer

    kept, trimmed, _ = _trimmed()
    again = AutoTokenizer.from_pretrained(_TMP / "tok")
    conv = [{"role": "user", "content": "다음 내용을 요약해줘: 본문"}]
    a = trimmed.apply_chat_template(conv, add_generation_prompt=True, tokenize=True, return_dict=True)[
        "input_ids"
    ]
    b = again.apply_chat_template(conv, add_generation_prompt=True, tokenize=True, return_dict=True)[
        "input_ids"
    ]
    assert list(a) == list(b)
    assert again.decode(a) == tiny_tokenizer().apply_chat_template(
        conv, add_generation_prompt=True, tokenize=False
    )
    assert (
        again.convert_tokens_to_ids("<end_of_turn>")
        == kept.old_to_new()[tiny_tokenizer().convert_tokens_to_ids("<end_of_turn>")]
    )


def test_trimmed_model_logits_equal_the_full_models_at_kept_ids(tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    kept, trimmed, examples = _trimmed()
    _, s_dir = tiny_models()
    full = AutoModelForCausalLM.from_pretrained(s_dir, dtype=torch.float32).eval()
    cut = trim_model(AutoModelForCausalLM.from_pretrained(s_dir, dtype=torch.float32), kept).eval()
    cut.save_pretrained(tmp_path)
    kept.save(tmp_path)
    cut = (
        AutoModelForCausalLM.from_pretrained(tmp_path, torch_dtype=torch.bfloat16, device_map="auto")
        .float()
        .eval()
    )
    assert (
        cut.config.vocab_size == kept.size
        and KeptVocab.load(tmp_path) == kept
        and (tmp_path / MAP_FILE).exists()
    )
    ids = examples[0]["input_ids"][:40]
    remap = kept.old_to_new()
    with torch.no_grad():
        a = full(torch.tensor([ids])).logits[0][:, list(kept.old_ids)]
        b = cut(torch.tensor([[remap[i] for i in ids]])).logits[0]
    assert torch.allclose(a, b, atol=0.05)  # bfloat16 weights on the way through the save


@pytest.mark.parametrize("divergence", ["forward_kl", "reverse_kl", "jsd"])
def test_kd_loss_through_the_map_equals_a_dense_reference(divergence: str) -> None:
    import torch

    from summ_assets.core.kd import bucket_divergence, sparse_kd_loss

    kept, _, _ = _trimmed()
    v_full, k, n = len(tiny_tokenizer()), 16, 6
    g = torch.Generator().manual_seed(0)
    p = torch.log_softmax(torch.randn(n, v_full, generator=g) * 3, -1)
    top = p.topk(k, -1)
    stored = top.indices.clone()
    stored[:, ::3] = torch.tensor(
        [i for i in range(v_full) if i not in set(kept.old_ids)][: stored[:, ::3].numel()]
    ).view(n, -1)
    lp = p.gather(-1, stored)
    tail = torch.log(-torch.expm1(torch.logsumexp(lp, -1)))
    row = {
        "token_ids": stored.tolist(),
        "logprobs": lp.tolist(),
        "tail_logprob": tail.tolist(),
        "target_ids": [kept.old_ids[3]] * n,
    }
    mapped = map_teacher_row(row, kept.old_to_new())
    width = max(len(x) for x in mapped["token_ids"])
    ids = torch.full((n, width), -1)
    lps = torch.full((n, width), float("-inf"))
    for i, (a, b) in enumerate(zip(mapped["token_ids"], mapped["logprobs"], strict=True)):
        ids[i, : len(a)], lps[i, : len(b)] = torch.tensor(a), torch.tensor(b)
    student = torch.randn(n, kept.size, generator=g)
    got = sparse_kd_loss(student, ids, lps, torch.tensor(mapped["tail_logprob"]), divergence=divergence)
    # dense reference on the full vocabulary: the student has no mass on dropped ids; stored ids the
    # student lacks are merged into the teacher's tail bucket
    q_full = torch.full((n, v_full), float("-inf"))
    q_full[:, list(kept.old_ids)] = torch.log_softmax(student, -1)
    in_kept = torch.tensor([[int(i) in kept.old_to_new() for i in r] for r in stored.tolist()])
    sel_p = torch.where(in_kept, lp, torch.tensor(float("-inf")))
    sel_q = torch.where(in_kept, q_full.gather(-1, stored), torch.tensor(float("-inf")))
    logp = torch.cat([sel_p, torch.log(-torch.expm1(torch.logsumexp(sel_p, -1, keepdim=True)))], -1)
    logq = torch.cat([sel_q, torch.log(-torch.expm1(torch.logsumexp(sel_q, -1, keepdim=True)))], -1)
    if divergence == "reverse_kl":
        from summ_assets.core.kd import floor_empty_tail

        logp = floor_empty_tail(logp, ~torch.isfinite(logp[:, -1]))
    want = bucket_divergence(logp, logq, divergence).mean()
    assert torch.allclose(got, want, atol=1e-4), (got, want)
    assert mapped["target_ids"] == [3] * n


def test_a_tokenizer_that_is_not_bpe_is_refused() -> None:
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    wp = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordPiece({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    )
    with pytest.raises(VocabError, match="not BPE"):
        kept_vocab(wp, [[1]], 10)


def test_tokenizer_hash_ignores_padding_and_truncation_state() -> None:
    """Regression: a tokenizer used with padding (a batched chat template) hashed differently from the
    same tokenizer fresh from disk, so `trim_folder` refused a kept set it had cut itself."""
    fresh, used = tiny_tokenizer(), tiny_tokenizer()
    before = tokenizer_hash(used)
    used.apply_chat_template(
        [[{"role": "user", "content": "가"}], [{"role": "user", "content": "가나다라마바사"}]],
        padding=True,
        truncation=True,
        max_length=8,
    )
    used.backend_tokenizer.enable_padding(pad_id=0)
    assert tokenizer_hash(used) == before == tokenizer_hash(fresh)


def test_padding_keeps_the_letters_of_the_training_scripts_first() -> None:
    """With room past the closure, every single-letter token of the scripts the training text writes in
    (Hangul here) is kept before any merge: unseen Korean words then cost a token per syllable, not
    three byte tokens."""
    import unicodedata

    tok = tiny_tokenizer()
    ids = tok("안녕하세요")["input_ids"]  # one script: Hangul
    hangul = {
        i
        for t, i in tok.get_vocab().items()
        if len(core := t.removeprefix("\u2581")) == 1 and unicodedata.name(core, "").startswith("HANGUL")
    }
    closure = kept_vocab(tok, [ids], size=len(set(ids))).closure
    assert len(hangul) > 20
    room = closure + len(hangul - set(kept_vocab(tok, [ids], size=len(set(ids))).old_ids))
    kept = set(kept_vocab(tok, [ids], size=room).old_ids)
    assert hangul <= kept
    assert len(kept) == room


def test_bits_per_byte_counts_the_text_not_the_tokens() -> None:
    """Text outside the training set costs the trimmed tokenizer more tokens; the per-byte loss divides
    by the bytes of the summary text, which both tokenizations spell, so it is comparable across them."""
    import math

    import torch
    from transformers import AutoModelForCausalLM

    from summ_assets.core.lm import completion_loss_and_bpb, completion_nats

    kept, trimmed, _ = _trimmed()
    _, s_dir = tiny_models()
    full_tok = tiny_tokenizer()
    rows = [{"section_id": "x", "text": "본문입니다.", "summary": "처음 보는 낱말들: 괭이갈매기, 쪽빛 바다."}]
    a = build_examples(rows, full_tok, 64, 64)
    b = build_examples(rows, trimmed, 64, 64)
    full = AutoModelForCausalLM.from_pretrained(s_dir, dtype=torch.float32).eval()
    cut = trim_model(AutoModelForCausalLM.from_pretrained(s_dir, dtype=torch.float32), kept).eval()
    per_token_a, bpb_a = completion_loss_and_bpb(full, a, full_tok)
    per_token_b, bpb_b = completion_loss_and_bpb(cut, b, trimmed)
    (nats_a, n_a), (nats_b, n_b) = completion_nats(full, a, 0), completion_nats(cut, b, 0)
    assert n_b > n_a  # the trimmed tokenizer spells the unseen words in more pieces ...
    summary_bytes = len(rows[0]["summary"].encode())
    # ... yet both divide by the same text: the summary's UTF-8 bytes (plus nothing for special tokens)
    assert nats_a / math.log(2) / bpb_a == pytest.approx(summary_bytes)
    assert nats_b / math.log(2) / bpb_b == pytest.approx(summary_bytes)
    assert per_token_a == pytest.approx(nats_a / n_a) and per_token_b == pytest.approx(nats_b / n_b)
