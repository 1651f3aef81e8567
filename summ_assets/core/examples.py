"""Tokenized training/eval examples built from the dataset split tables (one place, every stage)."""

from __future__ import annotations

import hashlib
from typing import Any

from summ_assets.core.prompts import encode_example


def example_key(input_ids: list[int]) -> str:
    """Content key of a tokenized example: the logit cache aligns rows by it."""
    return hashlib.sha256(",".join(map(str, input_ids)).encode()).hexdigest()[:24]


def build_examples(
    rows: list[dict[str, Any]], tokenizer: Any, max_prompt_tokens: int, max_summary_tokens: int
) -> list[dict[str, Any]]:
    """rows with section_id/text/summary -> list of {example_key, section_id, input_ids, completion_start}."""
    out = []
    for r in rows:
        summary_ids = tokenizer(r["summary"], add_special_tokens=False)["input_ids"]
        summary = r["summary"]
        if len(summary_ids) > max_summary_tokens:
            summary = tokenizer.decode(summary_ids[:max_summary_tokens], skip_special_tokens=True)
        ids, start = encode_example(tokenizer, r["text"], summary, max_prompt_tokens)
        out.append(
            {
                "example_key": example_key(ids),
                "section_id": r["section_id"],
                "input_ids": ids,
                "completion_start": start,
            }
        )
    return out
