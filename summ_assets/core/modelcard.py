"""Model cards written beside every saved model folder: README.md for people, card.json for programs.

Both hold the same data (title, lineage, config, the scalar metrics); code reads card.json through
`read_model_card` and never parses the README.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from summ_assets.core.artifacts import atomic_write_text, write_json

CARD_FILE = "card.json"
README_FILE = "README.md"


README_MARK = "Written by summ-assets."


class ModelCardError(ValueError):
    """A model folder has no readable card.json; the message names the folder and says what to do.

    `ours` is True when summ-assets wrote the folder (a README-only card of an older version, or a broken
    card.json), False for a folder without any summ-assets card (a plain Hugging Face folder).
    """

    def __init__(self, message: str, *, ours: bool) -> None:
        super().__init__(message)
        self.ours = ours


def card_data(
    title: str, lineage: dict[str, Any], config: dict[str, Any], metrics: dict[str, Any]
) -> dict[str, Any]:
    """What a model card holds: the title, lineage, config and the scalar metrics (no loss curves)."""
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str)) or v is None}
    return {"title": title, "lineage": lineage, "config": config, "metrics": scalars}


def write_model_card(
    folder: Path,
    title: str,
    lineage: dict[str, Any],
    config: dict[str, Any],
    metrics: dict[str, Any],
    final: Path | None = None,
) -> None:
    """Write README.md and card.json (the same data, each atomically) into `folder`. `final`: where the
    folder will live once complete (a build writes into a temporary folder that is then renamed); the
    card's load snippet names it."""
    where = Path(final) if final is not None else Path(folder)

    def block(obj: Any) -> str:
        return "```json\n" + json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n```\n"

    card = card_data(title, lineage, config, metrics)
    text = (
        f"# {title}\n\n{README_MARK} Load with:\n\n```python\nimport torch\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        f'model = AutoModelForCausalLM.from_pretrained("{where}", torch_dtype=torch.bfloat16, device_map="auto")\n'
        f'tokenizer = AutoTokenizer.from_pretrained("{where}")\n```\n\n'
        "`generation_config.json` holds the pipeline's decoding settings (greedy, repetition control), so "
        "plain `model.generate(...)` decodes as the pipeline does. The pipeline then returns one line cut "
        "at the end of the first sentence (`summ_assets.core.sentence_cut.final_summary`).\n\n"
        f"## Lineage\n{block(lineage)}\n## Config\n{block(config)}\n## Metrics\n{block(card['metrics'])}"
    )
    atomic_write_text(Path(folder) / README_FILE, text)
    write_json(Path(folder) / CARD_FILE, card)


def card_text(folder: Path) -> str:
    """The human model card (README.md) of `folder`, for the UI's asset page."""
    card = Path(folder) / README_FILE
    return card.read_text(encoding="utf-8") if card.is_file() else f"(no model card in {folder})"


def read_model_card(folder: Path) -> dict[str, Any]:
    """The card.json of `folder`: {"title", "lineage", "config", "metrics"}.

    Raises `ModelCardError` naming the folder when card.json is missing (a folder written by an older
    summ-assets has only README.md: re-materialize the model to write it), unreadable or not an object.
    """
    folder = Path(folder)
    path = folder / CARD_FILE
    if not path.is_file():
        readme = folder / README_FILE
        if readme.is_file() and README_MARK in readme.read_text(encoding="utf-8", errors="replace")[:4096]:
            raise ModelCardError(
                f"{folder}: no {CARD_FILE} (its model card was written by an older summ-assets, as "
                f"{README_FILE} only); re-materialize the model to write {CARD_FILE}",
                ours=True,
            )
        raise ModelCardError(
            f"{folder}: no model card ({CARD_FILE}); it was not written by summ-assets, or by an older "
            f"version: re-materialize the model to write one",
            ours=False,
        )
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelCardError(
            f"{path}: unreadable ({exc}); re-materialize the model to rewrite it", ours=True
        ) from exc
    if not isinstance(card, dict):
        raise ModelCardError(f"{path}: not a JSON object; re-materialize the model to rewrite it", ours=True)
    return card
