"""Batched greedy summarization with the shared prompt format and decoding settings.

The decoding settings (`decoding_options`) come from the profile's `eval` section: an n-gram ban on the
*generated* tokens (`GeneratedNoRepeatNGram`: transformers' own `NoRepeatNGramLogitsProcessor` applied
after the prompt; the library's `no_repeat_ngram_size` also bans every n-gram of the prompt, which stops
a summary from quoting its section: measured on val, README 'Why each setting'), transformers'
`repetition_penalty`, and the one-sentence cut (post-processing: `core.sentence_cut.final_summary`).
`generation_config` writes them into every model folder the pipeline saves.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from summ_assets.core.prompts import END_OF_TURN, prompt_messages
from summ_assets.core.sentence_cut import final_summary


def decoding_options(ev: Any) -> dict[str, Any]:
    """The profile's decoding settings (an `EvalConfig`), as `summarize_texts` keyword arguments."""
    return {
        "no_repeat_ngram_size": ev.no_repeat_ngram_size,
        "repetition_penalty": ev.repetition_penalty,
        "one_sentence": ev.one_sentence,
    }


def saved_decoding(gen: Any, ev: Any) -> dict[str, Any]:
    """The decoding a model folder was built with (its `generation_config.json`, see `generation_config`):
    ``max_new_tokens`` plus the `decoding_options` keywords. A field the folder does not record (a plain
    Hugging Face folder) falls back to `ev` (an `EvalConfig`)."""
    fallback = {"max_new_tokens": ev.max_new_tokens, **decoding_options(ev)}
    saved = {
        "max_new_tokens": getattr(gen, "max_new_tokens", None),
        "no_repeat_ngram_size": getattr(gen, "summ_generated_no_repeat_ngram_size", None),
        "repetition_penalty": getattr(gen, "repetition_penalty", None),
        "one_sentence": getattr(gen, "summ_one_sentence", None),
    }
    return {k: fallback[k] if v is None else v for k, v in saved.items()}


def generated_no_repeat(prompt_len: int, ngram_size: int) -> Any:
    """transformers' `NoRepeatNGramLogitsProcessor` over the tokens generated after `prompt_len` only
    (left-padded batches share one prompt length)."""
    from transformers import NoRepeatNGramLogitsProcessor

    class GeneratedNoRepeatNGram(NoRepeatNGramLogitsProcessor):
        def __call__(self, input_ids: Any, scores: Any) -> Any:
            return super().__call__(input_ids[:, prompt_len:], scores)

    return GeneratedNoRepeatNGram(ngram_size)


def generation_config(tokenizer: Any, ev: Any | None = None) -> Any:
    """The `GenerationConfig` saved with a model: greedy, stops at ``<end_of_turn>``, and with `ev` the
    profile's length limit and repetition penalty. The generated-only n-gram ban has no
    `GenerationConfig` field (the library's `no_repeat_ngram_size` bans the prompt's n-grams too): it is
    recorded as ``summ_generated_no_repeat_ngram_size`` for `summarize_texts` users."""
    from transformers import GenerationConfig

    extra: dict[str, Any] = {}
    if ev is not None:
        extra = {
            "max_new_tokens": ev.max_new_tokens,
            "repetition_penalty": ev.repetition_penalty,
            "summ_generated_no_repeat_ngram_size": ev.no_repeat_ngram_size,
            "summ_one_sentence": ev.one_sentence,
        }
    return GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=[tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(END_OF_TURN)],
        do_sample=False,
        **{"max_new_tokens": 64, **extra},
    )


def summarize_texts(
    model: Any,
    tokenizer: Any,
    texts: list[str],
    *,
    max_prompt_tokens: int,
    max_new_tokens: int,
    batch_size: int = 8,
    do_sample: bool = False,
    no_repeat_ngram_size: int = 0,
    repetition_penalty: float = 1.0,
    one_sentence: bool = False,
    progress: Callable[[str], None] | None = None,
) -> tuple[list[str], dict[str, Any]]:
    """Return (summaries, {"tokens", "seconds", "tokens_per_s", "row_tokens", "raw"}): ``raw[i]`` is the
    decoded generation, summary i its `final_summary` (one line; with `one_sentence`, its first
    sentence); ``row_tokens[i]`` = new tokens of generation i up to and including its end-of-turn
    (tokens/s here depends on when the longest row of a batch stops:
    `core.generation_store.forced_decode_speed` is the figure to compare models by)."""
    import torch

    model.eval()
    device = next(model.parameters()).device
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    outputs: list[str] = []
    raw: list[str] = []
    new_tokens, t0 = 0, time.time()
    eos = model.generation_config.eos_token_id
    try:
        # longest first: less padding per batch
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        results: dict[int, str] = {}
        counts: dict[int, int] = {}
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            convs = [prompt_messages(texts[i], tokenizer, max_prompt_tokens) for i in idx]
            enc = tokenizer.apply_chat_template(
                convs, add_generation_prompt=True, return_tensors="pt", return_dict=True, padding=True
            ).to(device)
            procs = None
            if no_repeat_ngram_size:
                from transformers import LogitsProcessorList

                procs = LogitsProcessorList(
                    [generated_no_repeat(enc["input_ids"].shape[1], no_repeat_ngram_size)]
                )
            with torch.no_grad():
                out = model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    do_sample=do_sample,
                    logits_processor=procs,
                    no_repeat_ngram_size=0,  # never the library's prompt-inclusive ban (a folder may set it)
                    repetition_penalty=repetition_penalty,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=eos,
                )
            gen = out[:, enc["input_ids"].shape[1] :]
            for row, i in zip(gen, idx, strict=True):
                stop = [
                    j for j, t in enumerate(row.tolist()) if t in (eos if isinstance(eos, list) else [eos])
                ]
                n = (stop[0] + 1) if stop else len(row)
                new_tokens += n
                counts[i] = n
                results[i] = tokenizer.decode(row[:n], skip_special_tokens=True).strip()
            if progress:
                progress(f"generated {min(s + batch_size, len(order))}/{len(order)}")
        raw = [results[i] for i in range(len(texts))]
        outputs = [final_summary(r, one_sentence) for r in raw]
    finally:
        tokenizer.padding_side = old_side
    dt = time.time() - t0
    return outputs, {
        "tokens": new_tokens,
        "seconds": dt,
        "tokens_per_s": new_tokens / dt if dt else 0.0,
        "row_tokens": [counts[i] for i in range(len(texts))],
        "raw": raw,
    }
