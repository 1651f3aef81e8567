"""The one prompt format used by every stage (training, logit capture, evaluation, serving).

The seed team served ``<start_of_turn>user\\n다음 내용을 요약해줘: {section}<end_of_turn>\\n<start_of_turn>model\\n``.
We build the same turn through the tokenizer's chat template (never by hand elsewhere); the template
below carries ``{% generation %}`` markers so trl can mask the loss to the summary tokens.
"""

from __future__ import annotations

from typing import Any

INSTRUCTION = "다음 내용을 요약해줘: "

# Gemma turn format (no system role: a system message is folded into the first user turn).
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% set ns = namespace(sys='') %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{% set ns.sys = message['content'] | trim + '\\n\\n' %}"
    "{% elif message['role'] == 'user' %}"
    "{{ '<start_of_turn>user\\n' + ns.sys + message['content'] | trim + '<end_of_turn>\\n' }}{% set ns.sys = '' %}"
    "{% elif message['role'] in ('assistant', 'model') %}"
    "{{ '<start_of_turn>model\\n' }}{% generation %}{{ message['content'] | trim + '<end_of_turn>\\n' }}{% endgeneration %}"
    "{% else %}{{ raise_exception('unsupported role: ' + message['role']) }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)

END_OF_TURN = "<end_of_turn>"


def clean_section(text: str) -> str:
    """The section text the model sees: markup rendered to its visible text (`core.markup.clean_text`:
    comments, link targets, images and shortcodes go, definition lists flatten, code stays marked).
    The one cleaner of training, logit capture, evaluation, `summarize` and `serve`."""
    from summ_assets.core.markup import clean_text

    return clean_text(text)[0]


# U+2060 WORD JOINER after the opening character: the string reads the same, the tokenizer no longer
# matches it as a control token
_JOINER = "\u2060"


def neutralise_special_tokens(text: str, tokenizer: Any) -> str:
    """Document text that spells a special token (``<end_of_turn>``, ``<bos>``, ...) is tokenized as
    text, never as the control token."""
    for tok in _special_strings(tokenizer):
        if tok in text:
            text = text.replace(tok, tok[0] + _JOINER + tok[1:])
    return text


def _special_strings(tokenizer: Any) -> list[str]:
    key = id(tokenizer)
    if key not in _SPECIAL_CACHE:
        found = set(getattr(tokenizer, "all_special_tokens", []) or [])
        for added in getattr(tokenizer, "added_tokens_decoder", {}).values():
            found.add(str(getattr(added, "content", added)))
        # longest first: '<start_of_turn>' before a shorter token that is its prefix
        _SPECIAL_CACHE[key] = sorted((t for t in found if len(t) > 1), key=len, reverse=True)
    return _SPECIAL_CACHE[key]


_SPECIAL_CACHE: dict[int, list[str]] = {}


def truncate_section(text: str, tokenizer: Any, max_tokens: int) -> str:
    """Cut `text` to at most `max_tokens` tokens of `tokenizer` (at a token boundary)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= max_tokens:
        return text
    return tokenizer.decode(ids[:max_tokens], skip_special_tokens=True)


def prompt_section(section_text: str, tokenizer: Any, max_tokens: int) -> tuple[str, bool]:
    """(the section as it goes into the prompt, whether the token budget cut it): cleaned, special
    tokens neutralised, then cut to `max_tokens` only if it is longer."""
    body = neutralise_special_tokens(clean_section(section_text), tokenizer)
    cut = truncate_section(body, tokenizer, max_tokens)
    return cut, cut != body


def user_message(section_text: str) -> dict[str, str]:
    return {"role": "user", "content": f"{INSTRUCTION}{section_text.strip()}"}


def prompt_messages(section_text: str, tokenizer: Any, max_tokens: int) -> list[dict[str, str]]:
    return [user_message(prompt_section(section_text, tokenizer, max_tokens)[0])]


def truncated_share(texts: list[str], tokenizer: Any, max_tokens: int) -> dict[str, float]:
    """How many of `texts` the prompt budget cuts: {"truncated", "total", "share"}."""
    cut = sum(prompt_section(t, tokenizer, max_tokens)[1] for t in texts)
    return {"truncated": cut, "total": len(texts), "share": cut / len(texts) if texts else 0.0}


def completion_messages(summary: str, tokenizer: Any) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": neutralise_special_tokens(summary.strip(), tokenizer)}]


def encode_prompt(tokenizer: Any, section_text: str, max_tokens: int) -> list[int]:
    """Token ids of the generation prompt (ends with ``<start_of_turn>model\\n``)."""
    return list(
        tokenizer.apply_chat_template(
            prompt_messages(section_text, tokenizer, max_tokens),
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
        )["input_ids"]
    )


def encode_example(tokenizer: Any, section_text: str, summary: str, max_tokens: int) -> tuple[list[int], int]:
    """(ids of prompt + summary turn, index of the first summary token).

    The summary is tokenized on its own and appended to the generation prompt, exactly what the model
    sees when it generates: teacher forcing, logit capture and KD positions line up by construction.
    """
    prompt_ids = encode_prompt(tokenizer, section_text, max_tokens)
    summary = neutralise_special_tokens(summary.strip(), tokenizer)
    completion = tokenizer(summary + END_OF_TURN, add_special_tokens=False)["input_ids"]
    return prompt_ids + list(completion), len(prompt_ids)


def prompt_version() -> str:
    """What the prompt builder is, for every downstream cache key (examples, logit cache, training,
    generations): this module's, the cleaner's and the answer post-processing's (`core.sentence_cut`:
    the one-sentence cut, which seq-KD targets and val selection read) source are hashed in, so any
    change to the template, the instruction, the cleaner, the neutralising or the cut re-runs what it
    must."""
    import hashlib
    import inspect

    from summ_assets.core import markup, sentence_cut

    src = "".join(inspect.getsource(m) for m in (markup, sentence_cut, inspect.getmodule(prompt_version)))
    src += INSTRUCTION + CHAT_TEMPLATE + END_OF_TURN  # the values in force (a patched module counts too)
    return "prompt-v2+" + hashlib.sha256(src.encode()).hexdigest()[:8]
