"""Which layers to drop? Summary-token loss of the depth-pruned base for every contiguous block.

Prints, for each block of `--drop` consecutive layers, the mean CE on the summary tokens of the
first `--n` training examples when that block is removed from the teacher's base (no training).
The block with the lowest loss is the best starting point for `student.source = "prune:<kept>"`;
the line to paste is printed last. Uses what `make demo` left in artifacts/.

    .venv/bin/python -m benchmarks.prune_probe --drop 4 --n 32

Measured on the demo (Gemma 3 270M, 18 layers, 32 train examples; full model 3.97):
dropping every other middle layer (4,6,8,10,12,14) gave 14.3, the best contiguous 6-block 10.0,
the best 4-block (6-9) 4.95 and the best 3-block (7-9) 4.61.
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

from summ_assets.core.offline import use_offline_env


def block_losses(base_dir: str, examples: list[dict], drop: int, pad_id: int) -> dict[tuple[int, ...], float]:
    """{dropped layers: loss} for every contiguous block of `drop` layers (layer 0 always kept)."""
    import torch
    from transformers import AutoModelForCausalLM

    from summ_assets.core.lm import mean_completion_loss

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    layers, types = list(model.model.layers), list(getattr(model.config, "layer_types", None) or [])
    out: dict[tuple[int, ...], float] = {}
    for start in range(1, len(layers) - drop + 1):
        dropped = tuple(range(start, start + drop))
        keep = [i for i in range(len(layers)) if i not in dropped]
        model.model.layers = torch.nn.ModuleList([layers[i] for i in keep])
        for j, layer in enumerate(model.model.layers):
            layer.self_attn.layer_idx = j
        model.config.num_hidden_layers = len(keep)
        if types:
            model.config.layer_types = [types[i] for i in keep]
        out[dropped] = mean_completion_loss(model, examples, pad_id)
    return out


def main() -> None:
    use_offline_env()
    from transformers import AutoTokenizer

    from summ_assets.core.dataset import read_split
    from summ_assets.core.examples import build_examples
    from summ_assets.core.profiles import get_profile

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--drop", type=int, default=4)
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--artifacts", default="artifacts")
    args = ap.parse_args()
    io = Path(args.artifacts) / "_dagster_io"
    base = pickle.loads((io / "teacher_base").read_bytes())["path"]
    dataset = pickle.loads((io / "summary_dataset").read_bytes())
    dp = get_profile().data
    tok = AutoTokenizer.from_pretrained(base)
    examples = build_examples(
        read_split(dataset, "train")[: args.n], tok, dp.max_prompt_tokens, dp.max_summary_tokens
    )
    losses = block_losses(base, examples, args.drop, tok.pad_token_id)
    for dropped, loss in sorted(losses.items()):
        print(f"drop {dropped[0]:2d}-{dropped[-1]:2d}: loss {loss:.3f}")
    best = min(losses, key=losses.get)
    n_layers = len(losses) + args.drop  # one candidate per start position 1..L-drop
    kept = [i for i in range(n_layers) if i not in best]
    print(f"best: drop {best[0]}-{best[-1]} (loss {losses[best]:.3f}) -> prune:{','.join(map(str, kept))}")


if __name__ == "__main__":
    main()
