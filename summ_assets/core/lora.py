"""LoRA teacher fine-tuning with peft + trl `SFTTrainer` (loss on the summary tokens only)."""

from __future__ import annotations

import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

from summ_assets.core.decoding import generation_config
from summ_assets.core.lm import (
    completion_ce,
    completion_loss_and_bpb,
    progress_callback,
    set_threads,
    trainer_kwargs,
)
from summ_assets.core.models import load_causal_lm, resolve_device, token_ids
from summ_assets.core.profiles import Profile
from summ_assets.core.prompts import completion_messages, prompt_messages

log = logging.getLogger(__name__)


def sft_rows(rows: list[dict[str, Any]], tokenizer: Any, max_prompt_tokens: int) -> list[dict[str, Any]]:
    """Conversational prompt/completion rows for trl (prompt format from `prompts.py`)."""
    return [
        {
            "prompt": prompt_messages(r["text"], tokenizer, max_prompt_tokens),
            "completion": completion_messages(r["summary"], tokenizer),
        }
        for r in rows
    ]


def last_checkpoint(work_dir: Path) -> str | None:
    ckpts = sorted(
        (p for p in Path(work_dir).glob("checkpoint-*") if (p / "trainer_state.json").exists()),
        key=lambda p: int(p.name.split("-")[-1]),
    )
    return str(ckpts[-1]) if ckpts else None


def train_lora_teacher(
    base_dir: Path,
    train_rows: list[dict[str, Any]],
    val_examples: list[dict[str, Any]],
    val_rows: list[dict[str, Any]],
    profile: Profile,
    work_dir: Path,
    out_dir: Path,
    progress: Any = None,
) -> dict[str, Any]:
    """Train a LoRA adapter on `train_rows`, save `out_dir/adapter` and `out_dir/merged`.

    Resumes from the newest checkpoint in `work_dir` (a crashed run picks up where it stopped).
    Returns metrics: base/final val loss, loss curves, timings.
    """
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer
    from trl import SFTConfig

    cfg = profile.teacher
    set_threads(profile.threads)
    torch.manual_seed(profile.seed)
    device = resolve_device(profile.device)
    tok = AutoTokenizer.from_pretrained(base_dir)
    model_kwargs: dict[str, Any] = {}
    if cfg.load_in_4bit:
        if device != "cuda":
            raise RuntimeError(
                "teacher.load_in_4bit (QLoRA) needs CUDA + bitsandbytes; this machine has no GPU — "
                "set load_in_4bit=False in the profile"
            )
        from transformers import BitsAndBytesConfig

        model_kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
        )
    # QLoRA too goes through the one loader (device_map="auto", max_memory, the attention rule)
    model = load_causal_lm(base_dir, profile.dtype, device, profile.max_memory, **model_kwargs)

    t0 = time.time()
    # the untuned base's val loss: the report's reference row (eval.untuned_val_loss)
    base_val_loss, base_val_bpb = completion_loss_and_bpb(
        model, val_examples if profile.eval.untuned_val_loss else [], tok
    )
    log.info("untuned base val loss %.4f (%.1fs)", base_val_loss, time.time() - t0)

    train_ds = Dataset.from_list(sft_rows(train_rows, tok, profile.data.max_prompt_tokens))
    eval_ds = Dataset.from_list(sft_rows(val_rows, tok, profile.data.max_prompt_tokens)) if val_rows else None
    args = SFTConfig(
        **trainer_kwargs(cfg, profile, device, work_dir, eval_ds is not None, len(train_rows)),
        warmup_steps=0,
        fp16=False,
        gradient_checkpointing=False,
        max_length=profile.data.max_prompt_tokens + profile.data.max_summary_tokens + 32,
        completion_only_loss=True,
    )
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.target_modules),
        trainable_token_indices=token_ids(tok, cfg.train_tokens) or None,
        task_type="CAUSAL_LM",
    )

    trainer = _sft_trainer_cls()(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tok,
        peft_config=lora,
        callbacks=[progress_callback(progress, "teacher")],
    )
    resume = last_checkpoint(work_dir)
    if resume:
        log.info("resuming teacher training from %s", resume)
    t1 = time.time()
    trainer.train(resume_from_checkpoint=resume)
    train_s = time.time() - t1
    history = trainer.state.log_history
    train_curve = [(h["step"], h["loss"]) for h in history if "loss" in h]
    eval_curve = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]

    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    adapter_dir, merged_dir = out_dir / "adapter", out_dir / "merged"
    trainer.model.save_pretrained(adapter_dir)
    tok.save_pretrained(adapter_dir)
    merged = trainer.model.merge_and_unload()
    final_val_loss, final_val_bpb = completion_loss_and_bpb(merged, val_examples, tok)
    merged.generation_config = generation_config(tok, profile.eval)
    merged.save_pretrained(merged_dir)
    tok.save_pretrained(merged_dir)
    shutil.rmtree(work_dir, ignore_errors=True)
    return {
        "base_val_loss": base_val_loss,
        "val_loss": final_val_loss,
        "base_val_bits_per_byte": base_val_bpb,
        "val_bits_per_byte": final_val_bpb,
        "train_loss_curve": train_curve,
        # one epoch: the trainer does not evaluate (the final val loss is that epoch's point)
        "eval_loss_curve": eval_curve
        or ([(int(trainer.state.global_step), final_val_loss)] if val_examples else []),
        "train_seconds": train_s,
        "steps": trainer.state.global_step,
        "trainable_parameters": trainable,
        "resumed_from": resume,
        "val_perplexity": math.exp(min(final_val_loss, 50)),
    }


def _sft_trainer_cls() -> Any:
    from trl import SFTTrainer

    class _CompletionSFTTrainer(SFTTrainer):
        """SFTTrainer whose loss computes logits only at summary positions (same value, less work),
        token-level over the accumulated batch."""

        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            # compute_loss normalizes by num_items_in_batch (summary positions of the accumulated batch):
            # the Trainer then counts them and does not divide the loss by grad_accum again
            self.model_accepts_loss_kwargs = True

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001
            loss = completion_ce(model, inputs, num_items_in_batch)
            return (loss, {"loss": loss}) if return_outputs else loss

    return _CompletionSFTTrainer
