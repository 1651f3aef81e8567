"""Causal-LM pieces shared by teacher SFT, logit capture, KD and the CE baseline.

With a 256k vocabulary the LM head dominates a small model's step, so every stage computes logits
only where they are used: at the positions that predict summary tokens.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

from summ_assets.core.profiles import Profile, StudentConfig, TeacherConfig

log = logging.getLogger(__name__)


def set_threads(threads: int | None) -> None:
    """Deliberate CPU threads (two jobs fighting over 2 cores run 5x slower)."""
    import torch

    n = threads or os.cpu_count() or 1
    torch.set_num_threads(max(1, n))


def _unwrap(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def softcap(logits: Any, config: Any) -> Any:
    import torch

    cap = getattr(config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def completion_logits(model: Any, input_ids: Any, attention_mask: Any, labels: Any) -> tuple[Any, Any, Any]:
    """Logits (float32) at the positions predicting a label != -100, and those labels.

    Returns (logits[N, V], targets[N], mask[B, L-1]) where `mask` selects, in row-major order, the
    predicting positions (position j-1 predicts token j).
    """
    base = _unwrap(model)
    decoder = base.get_decoder()
    hidden = decoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    mask = labels[:, 1:] != -100
    sel = hidden[:, :-1][mask]
    logits = softcap(base.get_output_embeddings()(sel).float(), base.config)
    return logits, labels[:, 1:][mask], mask


def completion_ce(model: Any, batch: dict[str, Any], num_items: Any = None) -> Any:
    """CE over the summary positions of `batch`: their mean, or their sum / `num_items` (the positions
    of the whole accumulated batch, so accumulation reproduces one large batch's gradient)."""
    import torch.nn.functional as F

    logits, targets, _ = completion_logits(
        model, batch["input_ids"], batch["attention_mask"], batch["labels"]
    )
    if num_items is None:
        return F.cross_entropy(logits, targets)
    return F.cross_entropy(logits, targets, reduction="sum") / num_items


def pad_batch(rows: list[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """Right-pad input_ids / labels / attention_mask of examples with `input_ids` + `completion_start`."""
    import torch

    n = max(len(r["input_ids"]) for r in rows)
    ids = torch.full((len(rows), n), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), n), -100, dtype=torch.long)
    att = torch.zeros((len(rows), n), dtype=torch.long)
    for i, r in enumerate(rows):
        x = torch.tensor(r["input_ids"], dtype=torch.long)
        ids[i, : len(x)] = x
        att[i, : len(x)] = 1
        cs = r["completion_start"]
        labels[i, cs : len(x)] = x[cs:]
    return {"input_ids": ids, "labels": labels, "attention_mask": att}


def completion_nats(
    model: Any, examples: list[dict[str, Any]], pad_id: int, batch_size: int = 8
) -> tuple[float, int]:
    """Summed CE (nats) on the summary tokens of `examples` and how many tokens it sums (no grad)."""
    import torch
    import torch.nn.functional as F

    model.eval()
    total, count = 0.0, 0
    device = next(model.parameters()).device
    # length-sorted batches: a sum does not depend on the order, and a batch pads to its longest row
    ordered = sorted(examples, key=lambda e: len(e["input_ids"]))
    with torch.no_grad():
        for i in range(0, len(ordered), batch_size):
            b = {k: v.to(device) for k, v in pad_batch(ordered[i : i + batch_size], pad_id).items()}
            logits, targets, _ = completion_logits(model, b["input_ids"], b["attention_mask"], b["labels"])
            total += float(F.cross_entropy(logits, targets, reduction="sum"))
            count += int(targets.numel())
    return total, count


def completion_mean_logprobs(
    model: Any, examples: list[dict[str, Any]], pad_id: int, batch_size: int = 8
) -> list[float]:
    """Each example's mean log-prob per summary token (teacher-forced, no grad), in input order."""
    import torch

    model.eval()
    device = next(model.parameters()).device
    out = [float("nan")] * len(examples)
    order = sorted(range(len(examples)), key=lambda i: len(examples[i]["input_ids"]))
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            b = {k: v.to(device) for k, v in pad_batch([examples[i] for i in idx], pad_id).items()}
            logits, targets, mask = completion_logits(model, b["input_ids"], b["attention_mask"], b["labels"])
            picked = torch.log_softmax(logits, dim=-1).gather(1, targets[:, None])[:, 0]
            rows = mask.nonzero()[:, 0]
            sums = torch.zeros(len(idx), device=picked.device).index_add_(0, rows, picked)
            counts = torch.zeros(len(idx), device=picked.device).index_add_(0, rows, torch.ones_like(picked))
            for j, i in enumerate(idx):
                out[i] = float(sums[j] / counts[j]) if counts[j] > 0 else float("nan")
    return out


def mean_completion_loss(
    model: Any, examples: list[dict[str, Any]], pad_id: int, batch_size: int = 8
) -> float:
    """Token-weighted mean CE on the summary tokens of `examples` (no grad)."""
    total, count = completion_nats(model, examples, pad_id, batch_size)
    return total / max(count, 1)


def completion_loss_and_bpb(
    model: Any, examples: list[dict[str, Any]], tokenizer: Any
) -> tuple[float, float]:
    """(mean CE per summary token, CE in bits per UTF-8 byte of the summary text those tokens spell).

    Per token depends on the tokenizer (a trimmed student spells unseen text in more, shorter pieces);
    bits per byte does not, so it is the figure to compare models with different vocabularies by."""
    import math

    if not examples:
        return float("nan"), float("nan")
    nats, count = completion_nats(model, examples, tokenizer.pad_token_id)
    n_bytes = sum(
        len(tokenizer.decode(e["input_ids"][e["completion_start"] :], skip_special_tokens=True).encode())
        for e in examples
    )
    return nats / max(count, 1), nats / math.log(2) / max(n_bytes, 1)


def runs_several_epochs(cfg: TeacherConfig | StudentConfig, n_examples: int) -> bool:
    """Whether training passes over the data more than once (an optimizer step consumes
    batch_size * grad_accum examples): only then is there an epoch to select or a curve to draw."""
    steps_per_epoch = math.ceil(n_examples / (cfg.batch_size * cfg.grad_accum))
    return cfg.epochs > 1 or cfg.max_steps > steps_per_epoch


def trainer_kwargs(
    cfg: TeacherConfig | StudentConfig,
    profile: Profile,
    device: str,
    work_dir: Any,
    has_eval: bool,
    n_train: int,
) -> dict[str, Any]:
    """Training arguments the teacher (trl SFTConfig) and the students (TrainingArguments) share:
    same schedule, logging, checkpointing, precision and seeds. The trainer evaluates val after each
    epoch only when there are several (with one, the caller's final val loss is that point: one pass
    over val saved per model)."""
    return {
        "output_dir": str(work_dir),
        "num_train_epochs": cfg.epochs,
        "max_steps": cfg.max_steps,
        "per_device_train_batch_size": cfg.batch_size,
        "per_device_eval_batch_size": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "learning_rate": cfg.learning_rate,
        "lr_scheduler_type": "linear",
        "logging_steps": 1,
        "eval_strategy": "epoch" if has_eval and runs_several_epochs(cfg, n_train) else "no",
        "save_strategy": "steps",
        "save_steps": cfg.save_steps,
        "save_total_limit": 2,
        "bf16": profile.dtype == "bfloat16" and device == "cuda",
        "use_cpu": device == "cpu",
        "report_to": "none",
        "seed": profile.seed,
        "data_seed": profile.seed,
        "disable_tqdm": True,
        "prediction_loss_only": True,
        "dataloader_num_workers": 0,
    }


def progress_callback(progress: Any, who: str) -> Any:
    """A TrainerCallback that reports "<who> step i/n loss x" through `progress` (e.g. Dagster's log)."""
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):  # noqa: ANN001
            if progress and logs and "loss" in logs:
                progress(f"{who} step {state.global_step}/{state.max_steps} loss {logs['loss']:.4f}")

    return Progress()
