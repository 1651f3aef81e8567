"""Model cards (README.md) written beside every saved model folder."""

import json
from pathlib import Path
from typing import Any

from summ_assets.core.artifacts import atomic_write_text


def write_model_card(
    folder: Path, title: str, lineage: dict[str, Any], config: dict[str, Any], metrics: dict[str, Any]
) -> None:
    def block(obj: Any) -> str:
        return "```json\n" + json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n```\n"

    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str)) or v is None}
    text = (
        f"# {title}\n\nWritten by summ-assets. Load with:\n\n```python\nimport torch\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        f'model = AutoModelForCausalLM.from_pretrained("{folder}", torch_dtype=torch.bfloat16, device_map="auto")\n'
        f'tokenizer = AutoTokenizer.from_pretrained("{folder}")\n```\n\n'
        f"## Lineage\n{block(lineage)}\n## Config\n{block(config)}\n## Metrics\n{block(scalars)}"
    )
    atomic_write_text(Path(folder) / "README.md", text)
