"""Model selection on val ROUGE-L: generate after each epoch, keep the best weights, stop on a plateau.

Val *loss* and val *ROUGE* disagree often enough on summarizers (a distilled student has lower loss
and can still decode worse) that the student is selected on what the report measures: greedy
summaries of the val split scored with Kiwi ROUGE-Lsum. The best epoch's trainable weights are kept
in memory (the frozen embeddings are not copied) and restored when training ends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from summ_assets.core.decoding import decoding_options, summarize_texts
from summ_assets.core.metrics import rouge_scores
from summ_assets.core.profiles import Profile

log = logging.getLogger(__name__)


def rouge_per_example(
    model: Any, tokenizer: Any, rows: list[dict[str, Any]], profile: Profile
) -> list[float]:
    """Kiwi ROUGE-Lsum F1 of the greedy summary of each of `rows` (dicts with text + summary)."""
    preds, _ = summarize_texts(
        model,
        tokenizer,
        [r["text"] for r in rows],
        max_prompt_tokens=profile.data.max_prompt_tokens,
        max_new_tokens=profile.eval.max_new_tokens,
        batch_size=profile.eval.batch_size,
        **decoding_options(profile.eval),
    )
    return [s["rougeLsum_f"] for s in rouge_scores(preds, [r["summary"] for r in rows], "kiwi")]


def val_rouge(model: Any, tokenizer: Any, rows: list[dict[str, Any]], profile: Profile) -> float:
    """Mean Kiwi ROUGE-Lsum F1 of greedy summaries of `rows` (dicts with text + summary)."""
    scores = rouge_per_example(model, tokenizer, rows, profile)
    return sum(scores) / max(len(scores), 1)


def rouge_selection_callback(
    tokenizer: Any,
    rows: list[dict[str, Any]],
    profile: Any,
    patience: int,
    progress: Callable[[str], None] | None = None,
    scorer: Callable[[Any], float] | None = None,
) -> Any:
    """A TrainerCallback: at each epoch end score val ROUGE-L, remember the best weights, stop after
    `patience` epochs without improvement (0 = never stop early), restore the best at train end.

    `history` on the returned object lists (epoch, rougeL); `best_epoch` is the one restored.
    `scorer(model) -> float` replaces generation + ROUGE (tests use a deterministic one).
    """
    from transformers import TrainerCallback

    score_fn = scorer or (lambda m: val_rouge(m, tokenizer, rows, profile))

    class RougeSelection(TrainerCallback):
        def __init__(self) -> None:
            self.history: list[tuple[float, float]] = []
            self.best: float = float("-inf")
            self.best_epoch: float | None = None
            self._best_state: dict[str, Any] | None = None
            self._bad = 0

        def on_epoch_end(self, args, state, control, model=None, **kw):  # noqa: ANN001
            score = float(score_fn(model))
            model.train()
            epoch = round(float(state.epoch or 0), 3)
            self.history.append((epoch, score))
            if progress:
                progress(f"epoch {epoch}: val ROUGE-Lsum {score:.4f} (best {max(self.best, score):.4f})")
            if score > self.best:
                self.best, self.best_epoch, self._bad = score, epoch, 0
                self._best_state = {
                    n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad
                }
            else:
                self._bad += 1
                if patience and self._bad >= patience:
                    log.info("val ROUGE-L did not improve for %d epoch(s): stopping", self._bad)
                    control.should_training_stop = True
            return control

        def on_train_end(self, args, state, control, model=None, **kw):  # noqa: ANN001
            if self._best_state is None or not self.history or self.history[-1][1] >= self.best:
                return control
            import torch

            params = dict(model.named_parameters())
            with torch.no_grad():
                for n, v in self._best_state.items():
                    params[n].copy_(v.to(params[n].device))
            if progress:
                progress(f"restored the weights of epoch {self.best_epoch} (val ROUGE-Lsum {self.best:.4f})")
            return control

    return RougeSelection()
