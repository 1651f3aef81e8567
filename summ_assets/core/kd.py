"""Knowledge distillation from cached sparse teacher targets.

Loss per summary position: ``alpha * T^2 * D(p_T || q_T) + (1 - alpha) * CE``, token-level: the sum
over every summary position of the accumulated batch divided by their count (``num_items_in_batch``),
so gradient accumulation gives the gradients of one large batch.

What is exact (README "Distillation notes"):
- Buckets. The teacher is known on the K stored ids plus one tail bucket (all other ids together).
  The student's distribution is coarsened to the same K+1 buckets (q_T at the stored ids, and its
  exact remaining mass, computed in O(K)). D is computed exactly between the two bucketed
  distributions: for top-k with K = V this is the dense divergence; otherwise it is the divergence
  of the coarsened pair (a lower bound on the dense one; the within-tail part is not seen).
- Temperature. T acts through the cache: `logits_cache.capture` stores p_T = softmax(z / T) at the
  *capture temperature*, so the stored log-probs and the tail bucket are the exact tempered ones.
  When a cache is used at another temperature (`capture_temperature` != T), the K+1 buckets are
  re-tempered as K+1 tokens (the tail as one bucket): p^(T_c/T) renormalized. That is exact when the
  tail is empty and otherwise a stated approximation (it gives the tail less tempered mass than the
  truth for T > T_c); the pipeline never needs it (teacher_logits captures at the student's T).
- Divergences. Forward KL: a bucket the teacher gives no mass contributes 0. JSD(0.5): the student's
  tail always counts; it is bounded (log 2), so an empty teacher tail is fine. Reverse KL: the
  student's tail always counts; where the teacher stored no tail (it held < 1e-5 of the mass, the
  capture threshold) its tail is floored at `TAIL_FLOOR` = 1e-5 (the stored ids scaled by 1 - floor),
  so the student pays for mass outside the teacher's support instead of it going unpenalised.
- Sampled targets (count/N of N draws from p_T): unbiased for the forward-KL gradient at the capture
  temperature only (it is linear in the target). Reverse KL, JSD and re-tempering are nonlinear in
  the target and hence biased: `sparse_kd_loss` refuses them for sampled targets, and the profile
  refuses a sampled cache with another divergence.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

from summ_assets.core import early_stopping
from summ_assets.core.decoding import generation_config
from summ_assets.core.lm import (
    completion_logits,
    completion_loss_and_bpb,
    pad_batch,
    progress_callback,
    runs_several_epochs,
    set_threads,
    trainer_kwargs,
)
from summ_assets.core.logits_cache import CacheSpec
from summ_assets.core.lora import last_checkpoint
from summ_assets.core.models import (
    count_parameters,
    load_causal_lm,
    merge_embedding_rows,
    resolve_device,
    token_ids,
    train_embedding_rows,
)
from summ_assets.core.profiles import DIVERGENCES, Profile

log = logging.getLogger(__name__)


TAIL_FLOOR = 1e-5  # reverse KL: the teacher's tail where it stored none (the capture threshold)


def _log_bucket_dist(lp_sel: Any, log_tail: Any) -> Any:
    """[N, K] log-probs on stored ids + [N] log tail -> [N, K+1] log distribution."""
    import torch

    return torch.cat([lp_sel, log_tail.unsqueeze(-1)], dim=-1)


def teacher_buckets(t_lp: Any, t_tail: Any, valid: Any, retemper: float = 1.0) -> Any:
    """Teacher [N, K+1] log distribution (invalid slots -> -inf), as cached, or re-tempered by
    `retemper` = T / T_capture with the tail as one bucket (p^(1/retemper), renormalized)."""
    import torch

    neg_inf = torch.tensor(float("-inf"), device=t_lp.device)
    dist = _log_bucket_dist(torch.where(valid, t_lp.float(), neg_inf), t_tail.float())
    if retemper != 1.0:
        dist = dist / retemper
    return dist - torch.logsumexp(dist, dim=-1, keepdim=True)


def floor_empty_tail(logp: Any, tail_empty: Any, floor: float = TAIL_FLOOR) -> Any:
    """Where the teacher's tail bucket is empty: tail = `floor`, stored ids scaled by (1 - floor)."""
    import torch

    floored = torch.cat(
        [logp[:, :-1] + math.log1p(-floor), torch.full_like(logp[:, -1:], math.log(floor))], -1
    )
    return torch.where(tail_empty.unsqueeze(-1), floored, logp)


def student_buckets(logq: Any, t_ids: Any, valid: Any) -> Any:
    """Student [N, K+1] log distribution from its log-probs `logq` [N, V]: log q at the teacher's ids
    plus the mass of every other id, 1 - sum(q_sel), computed in O(K) (no second vocabulary pass)."""
    import torch

    neg_inf = torch.tensor(float("-inf"), device=logq.device)
    sel = torch.where(valid, logq.gather(-1, t_ids.clamp(min=0)), neg_inf)
    covered = torch.logsumexp(sel, dim=-1, keepdim=True)
    tail = torch.log(-torch.expm1(covered.clamp(max=-1e-6))).squeeze(-1)
    return _log_bucket_dist(sel, tail)


def _log_mixture(logp: Any, logq: Any) -> Any:
    """log((p + q) / 2), with finite gradients where both are 0 (padding, empty tail)."""
    import torch

    both = torch.isinf(logp) & torch.isinf(logq)
    m = torch.logaddexp(logp.masked_fill(both, 0.0), logq.masked_fill(both, 0.0)) - math.log(2.0)
    return m.masked_fill(both, float("-inf"))


def _kl(logp: Any, logq: Any) -> Any:
    """sum p (log p - log q) over the last dim; 0 * anything = 0 where p = 0."""
    import torch

    p = logp.exp()
    diff = torch.where(p > 0, logp - logq, torch.zeros_like(logp))
    return (p * diff).sum(-1)


def bucket_divergence(logp: Any, logq: Any, divergence: str) -> Any:
    """Per-row D(p || q) between two log distributions over the same buckets (or the full vocabulary)."""
    if divergence == "forward_kl":
        return _kl(logp, logq)
    if divergence == "reverse_kl":
        return _kl(logq, logp)
    m = _log_mixture(logp, logq)
    return 0.5 * _kl(logp, m) + 0.5 * _kl(logq, m)


def sparse_kd_loss(
    student_logits: Any,
    t_ids: Any,
    t_logprobs: Any,
    t_tail: Any,
    *,
    temperature: float = 1.0,
    divergence: str = "forward_kl",
    student_logq: Any = None,
    capture_temperature: float | None = None,
    sampled: bool = False,
    reduction: str = "mean",
) -> Any:
    """T^2 * D(teacher || student) on K+1 buckets, averaged over positions (`reduction` "mean"),
    summed ("sum") or per position ("none").

    Inputs are [N, V] / [N, K] / [N]. `capture_temperature` (default: `temperature`) is the
    temperature the cached targets were stored at; `sampled` marks sampled targets (forward KL at the
    capture temperature only). `student_logq` (log_softmax of the logits at T=1) may be passed to
    reuse the CE pass when T == 1.
    """
    import torch

    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}")
    t_cap = temperature if capture_temperature is None else capture_temperature
    if sampled and (divergence != "forward_kl" or t_cap != temperature):
        raise ValueError(
            f"sampled teacher targets are unbiased only for forward KL at their capture temperature "
            f"(got divergence={divergence!r}, T={temperature}, captured at T={t_cap}): use a top-k cache "
            "(cache.mode='topk') or divergence='forward_kl' with the cache captured at the student's T"
        )
    valid = (t_ids >= 0) & torch.isfinite(t_logprobs.float())
    logp = teacher_buckets(t_logprobs, t_tail, valid, temperature / t_cap)
    if student_logq is None or temperature != 1.0:
        scaled = student_logits.float() if temperature == 1.0 else student_logits.float() / temperature
        student_logq = torch.log_softmax(scaled, dim=-1)
    logq = student_buckets(student_logq, t_ids, valid)
    if divergence == "reverse_kl":
        logp = floor_empty_tail(logp, ~torch.isfinite(logp[:, -1]))
    per = bucket_divergence(logp, logq, divergence) * temperature**2
    if reduction == "none":
        return per
    return per.sum() if reduction == "sum" else per.mean()


def dense_kd_loss(
    student_logits: Any, teacher_logprobs: Any, temperature: float = 1.0, divergence: str = "forward_kl"
) -> Any:
    """Reference: the same divergence over the full vocabulary at temperature T (tests and benchmarks
    compare against this)."""
    import torch

    logp = torch.log_softmax(teacher_logprobs.float() / temperature, -1)
    logq = torch.log_softmax(student_logits.float() / temperature, -1)
    return bucket_divergence(logp, logq, divergence).mean() * temperature**2


class CacheAlignmentError(ValueError):
    pass


def attach_teacher(examples: list[dict[str, Any]], cache: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Join each example with its cache row by `example_key`; a missing or misaligned row is an error."""
    out = []
    for ex in examples:
        row = cache.get(ex["example_key"])
        if row is None:
            raise CacheAlignmentError(
                f"example {ex['example_key']} (section {ex.get('section_id')}) has no row in the teacher logit "
                "cache; re-materialize teacher_logits"
            )
        want = list(range(ex["completion_start"], len(ex["input_ids"])))
        if row["positions"] != want or row["target_ids"] != [ex["input_ids"][j] for j in want]:
            raise CacheAlignmentError(
                f"example {ex['example_key']}: cached positions/targets do not match the tokenized example"
            )
        out.append({**ex, "teacher": row})
    return out


def collate(rows: list[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """Pad a batch; teacher targets become [N, K] tensors in the order `completion_logits` selects."""
    import torch

    batch = pad_batch(rows, pad_id)
    if rows and "teacher" in rows[0]:
        per_pos_ids, per_pos_lp, tails = [], [], []
        for r in rows:
            t = r["teacher"]
            per_pos_ids += t["token_ids"]
            per_pos_lp += t["logprobs"]
            tails += t["tail_logprob"]
        k = max(len(x) for x in per_pos_ids)
        ids = torch.full((len(per_pos_ids), k), -1, dtype=torch.long)
        lp = torch.full((len(per_pos_ids), k), float("-inf"))
        for i, (a, b) in enumerate(zip(per_pos_ids, per_pos_lp, strict=True)):
            ids[i, : len(a)] = torch.tensor(a, dtype=torch.long)
            lp[i, : len(b)] = torch.tensor(b, dtype=torch.float32)
        batch.update(
            teacher_ids=ids, teacher_logprobs=lp, teacher_tail=torch.tensor(tails, dtype=torch.float32)
        )
    return batch


def _trainer_cls() -> Any:
    import torch
    import torch.nn.functional as F
    from transformers import Trainer

    class DistillationTrainer(Trainer):
        """`Trainer` whose loss mixes CE with sparse KD against cached teacher targets.

        With alpha == 0 (or no teacher tensors in the batch) it is plain CE: the baseline runs the
        very same code path, so the comparison isolates what distillation adds.
        """

        def __init__(
            self,
            *a: Any,
            alpha: float = 0.5,
            temperature: float = 1.0,
            divergence: str = "forward_kl",
            capture_temperature: float | None = None,
            sampled: bool = False,
            **kw: Any,
        ):
            super().__init__(*a, **kw)
            self.alpha, self.temperature, self.divergence = alpha, temperature, divergence
            self.capture_temperature, self.sampled = capture_temperature, sampled
            # our compute_loss takes num_items_in_batch (the summary positions of the whole accumulated
            # batch) and normalizes by it, so the Trainer counts them and does not divide by grad_accum
            self.model_accepts_loss_kwargs = True
            self.kd_log: list[tuple[int, float, float]] = []

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001
            logits, targets, _ = completion_logits(
                model, inputs["input_ids"], inputs["attention_mask"], inputs["labels"]
            )
            n = max(int(targets.numel()), 1)
            denom = num_items_in_batch if num_items_in_batch is not None else n
            logq = torch.log_softmax(logits, dim=-1)  # one vocabulary pass shared by CE and KD (T=1)
            ce_sum = F.nll_loss(logq, targets, reduction="sum")
            loss = ce_sum / denom
            if self.alpha > 0 and "teacher_ids" in inputs:
                kd_sum = sparse_kd_loss(
                    logits,
                    inputs["teacher_ids"],
                    inputs["teacher_logprobs"],
                    inputs["teacher_tail"],
                    temperature=self.temperature,
                    divergence=self.divergence,
                    student_logq=logq,
                    capture_temperature=self.capture_temperature,
                    sampled=self.sampled,
                    reduction="sum",
                )
                loss = (self.alpha * kd_sum + (1 - self.alpha) * ce_sum) / denom
                if model.training:
                    self.kd_log.append((self.state.global_step, kd_sum.item() / n, ce_sum.item() / n))
            return (loss, {"loss": loss}) if return_outputs else loss

    return DistillationTrainer


def freeze_embeddings(model: Any) -> None:
    """Freeze the (tied) input embedding and LM head: with a 256k vocabulary they are most of a small
    model's parameters, and the optimizer state for them would dominate memory."""
    for p in model.get_input_embeddings().parameters():
        p.requires_grad_(False)
    out_emb = model.get_output_embeddings()
    if out_emb is not None:
        for p in out_emb.parameters():
            p.requires_grad_(False)


def train_student(
    base_dir: Path,
    train_examples: list[dict[str, Any]],
    val_examples: list[dict[str, Any]],
    profile: Profile,
    work_dir: Path,
    out_dir: Path,
    *,
    alpha: float,
    progress: Any = None,
    val_rows: list[dict[str, Any]] | None = None,
    teacher_spec: CacheSpec | None = None,
    score_base: bool = True,
) -> dict[str, Any]:
    """Train the student (full or LoRA) on examples (with `teacher` rows when alpha > 0).

    `score_base` False: the untuned base's val loss is not computed (NaN), for a second student of the
    same base whose sibling already scores it.

    `teacher_spec`: the spec of the cache the teacher rows come from (its capture temperature and
    mode decide how the KD term reads them; None = captured at the student's temperature, top-k).

    With `val_rows` (text + summary) and ``cfg.select_on_val_rouge``, val ROUGE-L is scored after each
    epoch, training stops after ``cfg.early_stopping_patience`` epochs without improvement, and the
    best epoch's weights are the ones saved.
    """
    import shutil

    import torch
    from transformers import AutoTokenizer, TrainingArguments

    cfg = profile.student
    set_threads(profile.threads)
    torch.manual_seed(profile.seed)
    device = resolve_device(profile.device)
    tok = AutoTokenizer.from_pretrained(base_dir)
    model = load_causal_lm(base_dir, profile.dtype, device, profile.max_memory)
    if cfg.train_mode == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model,
            LoraConfig(
                r=cfg.lora_r,
                lora_alpha=cfg.lora_alpha,
                lora_dropout=0.0,
                target_modules=list(profile.teacher.target_modules),
                trainable_token_indices=token_ids(tok, cfg.train_tokens) or None,
                task_type="CAUSAL_LM",
            ),
        )
    elif cfg.freeze_embeddings:
        freeze_embeddings(model)
        train_embedding_rows(model, token_ids(tok, cfg.train_tokens))
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    base_val_loss, base_val_bpb = completion_loss_and_bpb(model, val_examples if score_base else [], tok)

    args = TrainingArguments(
        **trainer_kwargs(cfg, profile, device, work_dir, bool(val_examples), len(train_examples)),
        remove_unused_columns=False,
    )
    trainer = _trainer_cls()(
        model=model,
        args=args,
        train_dataset=train_examples,
        eval_dataset=val_examples or None,
        data_collator=lambda rows: collate(rows, tok.pad_token_id),
        callbacks=[progress_callback(progress, "student")],
        alpha=alpha,
        # the KD settings matter only with a KD term (the CE baseline does not read them)
        temperature=cfg.temperature if alpha > 0 else 1.0,
        divergence=cfg.divergence if alpha > 0 else "forward_kl",
        capture_temperature=teacher_spec.capture_temperature if teacher_spec is not None else None,
        sampled=teacher_spec is not None and teacher_spec.mode == "sampled",
    )
    selection = None
    # one epoch or less: nothing to select between (the evaluation report scores the final model)
    if val_rows and cfg.select_on_val_rouge and runs_several_epochs(cfg, len(train_examples)):
        selection = early_stopping.rouge_selection_callback(
            tok, val_rows, profile, cfg.early_stopping_patience, progress
        )
        trainer.add_callback(selection)
    resume = last_checkpoint(work_dir)
    t0 = time.time()
    trainer.train(resume_from_checkpoint=resume)
    train_s = time.time() - t0
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    final = trainer.model.merge_and_unload() if cfg.train_mode == "lora" else trainer.model
    merge_embedding_rows(final)
    val_loss, val_bpb = completion_loss_and_bpb(final, val_examples, tok)
    for p in final.parameters():
        p.requires_grad_(True)
    final.generation_config = generation_config(tok, profile.eval)
    final.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    history = trainer.state.log_history
    shutil.rmtree(work_dir, ignore_errors=True)
    return {
        "alpha": alpha,
        "base_val_loss": base_val_loss,
        "val_loss": val_loss,
        "base_val_bits_per_byte": base_val_bpb,
        "val_bits_per_byte": val_bpb,
        "train_loss_curve": [(h["step"], h["loss"]) for h in history if "loss" in h],
        # one epoch: the trainer does not evaluate (the final val loss is that epoch's point)
        "eval_loss_curve": [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
        or ([(int(trainer.state.global_step), val_loss)] if val_examples else []),
        "kd_ce_curve": trainer.kd_log,
        "train_seconds": train_s,
        "steps": trainer.state.global_step,
        "planned_steps": trainer.state.max_steps,
        "seconds_per_step": train_s / max(trainer.state.global_step, 1),
        "parameters": count_parameters(final),
        "trainable_parameters": trainable,
        "resumed_from": resume,
        "val_rouge_by_epoch": selection.history if selection else [],
        "selected_epoch": selection.best_epoch if selection else None,
    }
