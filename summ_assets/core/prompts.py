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


def truncate_section(text: str, tokenizer: Any, max_tokens: int) -> str:
    """Cut `text` to at most `max_tokens` tokens of `tokenizer` (at a token boundary)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= max_tokens:
        return text
    return tokenizer.decode(ids[:max_tokens], skip_special_tokens=True)


def user_message(section_text: str, heading_path: str = "") -> dict[str, str]:
    body = section_text.strip()
    return {"role": "user", "content": f"{INSTRUCTION}{body}"}


def prompt_messages(section_text: str, tokenizer: Any, max_tokens: int) -> list[dict[str, str]]:
    return [user_message(truncate_section(section_text, tokenizer, max_tokens))]


def completion_messages(summary: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": summary.strip()}]


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
    completion = tokenizer(summary.strip() + END_OF_TURN, add_special_tokens=False)["input_ids"]
    return prompt_ids + list(completion), len(prompt_ids)


def prompt_version() -> str:
    """What the prompt builder is, for cache keys: bump the tag when `truncate_section` /
    `user_message` change behaviour; the instruction and the template are hashed in."""
    import hashlib

    return "prompt-v1+" + hashlib.sha256((INSTRUCTION + CHAT_TEMPLATE).encode()).hexdigest()[:8]
