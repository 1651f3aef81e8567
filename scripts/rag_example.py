"""Load a student folder exactly as users will, and summarize the seed's RAG example in one sentence.

    .venv/bin/python scripts/rag_example.py [STUDENT_DIR]   # default: the promoted student

Loads with ``AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.bfloat16, device_map="auto")``
(the mission's contract), applies the folder's own chat template and decodes only the new tokens.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RAG_SECTION = (
    "### RAG(Retrieval-Augmented Generation)의 핵심 구성 요소\n\n"
    "RAG 시스템은 크게 세 단계로 구성된다. 먼저 문서를 불러와 일정한 길이의 청크로 나누고, 각 청크를 "
    "임베딩하여 벡터 저장소에 넣는다. 질의가 들어오면 검색 단계에서 질의 임베딩과 가까운 상위 청크를 "
    "찾는다. 마지막으로 생성 단계에서 언어 모델이 검색된 청크를 근거로 답변을 만든다."
)


def main() -> int:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from summ_assets.core.prompts import prompt_messages

    if len(sys.argv) > 1:
        path = Path(sys.argv[1])
    else:
        pointer = Path("artifacts/promoted_student/current.json")
        if not pointer.exists():
            print("no promoted student yet: pass a student folder", file=sys.stderr)
            return 2
        path = Path(json.loads(pointer.read_text())["path"])
    model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.bfloat16, device_map="auto")
    tok = AutoTokenizer.from_pretrained(path)
    enc = tok.apply_chat_template(
        [prompt_messages(RAG_SECTION, tok, 256)],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    ).to(model.device)
    out = model.generate(**enc, max_new_tokens=64, do_sample=False)
    summary = tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True).strip()
    print(f"model: {path} ({model.dtype}, {model.device})")
    print(f"summary: {summary}")
    return 0 if summary else 1


if __name__ == "__main__":
    raise SystemExit(main())
