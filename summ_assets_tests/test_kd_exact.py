"""KD losses against dense references: temperature through the cache, the tail bucket of every
divergence, sampled targets' gradient, and gradient accumulation in both trainers."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from summ_assets.core.kd import TAIL_FLOOR, dense_kd_loss, sparse_kd_loss
from summ_assets.core.lm import runs_several_epochs
from summ_assets.core.logits_cache import sparse_targets
from summ_assets.core.profiles import TINY

V = 50
DIVERGENCES = ["forward_kl", "reverse_kl", "jsd"]


def _pair(seed: int = 0, n: int = 7, sharp: float = 2.0):
    g = torch.Generator().manual_seed(seed)
    teacher = torch.log_softmax(torch.randn(n, V, generator=g) * sharp, -1)
    student = torch.randn(n, V, generator=g, requires_grad=True)
    return teacher, student


def bucketed_reference(
    student: torch.Tensor, teacher: torch.Tensor, k: int, temperature: float, divergence: str
) -> torch.Tensor:
    """The chosen definition, computed densely: teacher and student at T, coarsened to the teacher's
    top-k ids + one bucket of everything else; an (almost) empty teacher tail (< 1e-5, the capture
    threshold) is empty, and floored at TAIL_FLOOR for reverse KL; T^2 * D, mean over positions."""
    p = torch.softmax(teacher.float() / temperature, -1)
    q = torch.softmax(student.float() / temperature, -1)
    ids = teacher.topk(k, -1).indices
    outside = torch.ones_like(p, dtype=torch.bool).scatter(-1, ids, False)
    pb = torch.cat([p.gather(-1, ids), (p * outside).sum(-1, keepdim=True)], -1)
    qb = torch.cat([q.gather(-1, ids), (q * outside).sum(-1, keepdim=True)], -1)
    empty = pb[:, -1] < 1e-5
    pb = torch.where(empty.unsqueeze(-1), torch.cat([pb[:, :-1], torch.zeros_like(pb[:, -1:])], -1), pb)
    pb = pb / pb.sum(-1, keepdim=True)
    if divergence == "reverse_kl":
        floored = torch.cat([pb[:, :-1] * (1 - TAIL_FLOOR), torch.full_like(pb[:, -1:], TAIL_FLOOR)], -1)
        pb = torch.where(empty.unsqueeze(-1), floored, pb)

    def kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        safe = a.clamp_min(1e-30).log() - b.clamp_min(1e-30).log()  # finite gradients at 0
        return torch.where(a > 0, a * safe, torch.zeros_like(a)).sum(-1)

    if divergence == "forward_kl":
        per = kl(pb, qb)
    elif divergence == "reverse_kl":
        per = kl(qb, pb)
    else:
        m = (pb + qb) / 2
        per = 0.5 * kl(pb, m) + 0.5 * kl(qb, m)
    return per.mean() * temperature**2


@pytest.mark.parametrize("divergence", DIVERGENCES)
@pytest.mark.parametrize("temperature", [1.0, 2.0])
@pytest.mark.parametrize("k", [8, V])
def test_topk_cache_captured_at_t_equals_the_bucketed_dense_reference(
    divergence: str, temperature: float, k: int
) -> None:
    """K < V (a real tail) and K = V (no tail: the reference is then the dense divergence)."""
    teacher, student = _pair()
    ids, lp, tail = sparse_targets(teacher, "topk", k, 0, temperature=temperature)
    sparse = sparse_kd_loss(student, ids, lp, tail, temperature=temperature, divergence=divergence)
    ref = bucketed_reference(student, teacher, k, temperature, divergence)
    assert torch.allclose(sparse, ref, rtol=2e-3, atol=1e-4), (sparse, ref)
    if k == V:
        assert torch.allclose(sparse, dense_kd_loss(student, teacher, temperature, divergence), atol=1e-4)
    g_sparse = torch.autograd.grad(sparse, student)[0]
    g_ref = torch.autograd.grad(bucketed_reference(student, teacher, k, temperature, divergence), student)[0]
    assert torch.allclose(g_sparse, g_ref, rtol=1e-2, atol=1e-5)


@pytest.mark.parametrize("divergence", DIVERGENCES)
def test_an_empty_teacher_tail_still_counts_the_students_mass_outside_the_stored_ids(divergence: str) -> None:
    """A confident teacher (top-k holds all but < 1e-5): no stored tail. The student's mass outside
    the stored ids must still cost (reverse KL: against the floor; JSD: bounded; forward KL: via
    the stored ids' probabilities), and more outside mass must cost more."""
    g = torch.Generator().manual_seed(1)
    logits = torch.zeros(5, V)
    logits[:, :8] = 20 + torch.randn(5, 8, generator=g)  # 8 ids hold all but ~1e-8 of the mass
    teacher = torch.log_softmax(logits, -1)
    ids, lp, tail = sparse_targets(teacher, "topk", 8, 0)
    assert torch.isinf(tail).all()
    base = teacher.detach().clone()
    outside = torch.ones_like(base, dtype=torch.bool).scatter(-1, ids, False)
    losses = []
    for shift in (0.0, 8.0, 16.0):
        student = (base + shift * outside).requires_grad_(True)
        loss = sparse_kd_loss(student, ids, lp, tail, divergence=divergence)
        ref = bucketed_reference(student, teacher, 8, 1.0, divergence)
        assert torch.allclose(loss, ref, rtol=2e-3, atol=1e-5)
        (grad,) = torch.autograd.grad(loss, student)
        if shift > 0:  # descending the loss lowers the logits of the ids the teacher never gave mass
            assert (grad[outside] > 0).float().mean() > 0.9
        losses.append(float(loss))
    assert losses[0] < losses[1] < losses[2] and all(math.isfinite(x) for x in losses)
    if divergence == "jsd":
        assert losses[-1] <= math.log(2) + 1e-6


def test_one_bucket_retempering_of_a_t1_cache_is_exact_without_a_tail_and_bounded_with_one() -> None:
    teacher, student = _pair(2)
    ids, lp, tail = sparse_targets(teacher, "topk", V, 0)  # captured at T=1, full support
    re = sparse_kd_loss(student, ids, lp, tail, temperature=2.0, capture_temperature=1.0)
    assert torch.allclose(re, dense_kd_loss(student, teacher, 2.0), atol=1e-4)
    # with a tail, captured at T=2 is exact; re-tempering a T=1 cache is not (the stated approximation)
    ids, lp, tail = sparse_targets(teacher, "topk", 8, 0)
    approx = sparse_kd_loss(student, ids, lp, tail, temperature=2.0, capture_temperature=1.0)
    exact = bucketed_reference(student, teacher, 8, 2.0, "forward_kl")
    assert torch.isfinite(approx) and not torch.allclose(approx, exact, rtol=1e-3)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_sampled_forward_kl_gradient_converges_to_the_dense_gradient(temperature: float) -> None:
    """count/N of N draws from p_T: the forward-KL gradient (linear in the target) is unbiased, so
    its average over many draws approaches the dense tempered gradient."""
    teacher, student = _pair(3, n=4)
    (dense,) = torch.autograd.grad(dense_kd_loss(student, teacher, temperature), student)
    gen = torch.Generator().manual_seed(0)
    rounds, total = 300, torch.zeros_like(student)
    for _ in range(rounds):
        ids, lp, tail = sparse_targets(teacher, "sampled", 0, 32, gen, temperature=temperature)
        loss = sparse_kd_loss(student, ids, lp, tail, temperature=temperature, sampled=True)
        total += torch.autograd.grad(loss, student)[0]
    mean = total / rounds
    cos = torch.nn.functional.cosine_similarity(mean.flatten(), dense.flatten(), dim=0)
    assert cos > 0.99, float(cos)
    assert (mean - dense).abs().max() < 0.15 * dense.abs().max()


@pytest.mark.parametrize(
    ("divergence", "temperature", "capture"),
    [("reverse_kl", 1.0, 1.0), ("jsd", 1.0, 1.0), ("forward_kl", 2.0, 1.0)],
)
def test_sampled_targets_refuse_the_biased_settings(
    divergence: str, temperature: float, capture: float
) -> None:
    teacher, student = _pair(4)
    ids, lp, tail = sparse_targets(teacher, "sampled", 0, 16, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="unbiased only for forward KL at their capture temperature"):
        sparse_kd_loss(
            student,
            ids,
            lp,
            tail,
            temperature=temperature,
            divergence=divergence,
            capture_temperature=capture,
            sampled=True,
        )


def test_a_profile_with_a_sampled_cache_and_another_divergence_is_refused() -> None:
    with pytest.raises(ValueError, match="sampled targets are unbiased only for forward KL"):
        replace(
            TINY,
            cache=replace(TINY.cache, mode="sampled", n_samples=16),
            student=replace(TINY.student, divergence="reverse_kl"),
        )


def test_several_epochs_counts_gradient_accumulation() -> None:
    """40 examples at batch 2 x accumulation 4 = 5 optimizer steps per epoch: 6 steps run a second
    epoch (the old check divided by the batch size alone: 20 steps per epoch, never multi-epoch)."""
    cfg = replace(TINY.student, epochs=1, max_steps=6, batch_size=2, grad_accum=4)
    assert runs_several_epochs(cfg, 40)
    assert not runs_several_epochs(replace(cfg, max_steps=4), 40)
    assert not runs_several_epochs(replace(cfg, grad_accum=1), 40)
    assert runs_several_epochs(replace(cfg, max_steps=-1, epochs=2), 40)


# --- gradient accumulation: one step at batch 4 == two accumulated steps at batch 2 ----------------------

ROWS = [
    {
        "section_id": f"s{i}",
        "text": f"섹션 {i}: 검색 단계는 질의를 임베딩하고 상위 문서를 고른다. " * (1 + i % 3),
        # summaries of different lengths: token-level normalization differs from a mean of batch means
        "summary": "검색 단계는 상위 문서를 고른다." + " 그리고 순위를 매긴다." * (i % 4),
    }
    for i in range(8)
]


def _recording(factory):
    """A trainer-class factory whose trainers record every parameter gradient before clipping."""
    recorded: list[dict[str, torch.Tensor]] = []

    def make():
        base = factory()

        class Recording(base):
            def _clip_grad_norm(self, model):
                recorded.append(
                    {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
                )
                return super()._clip_grad_norm(model)

        return Recording

    return make, recorded


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys() and a
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=1e-4, atol=1e-6), name


def test_student_gradient_accumulation_equals_one_large_batch(tmp_path: Path, monkeypatch) -> None:
    from transformers import AutoModelForCausalLM

    from summ_assets.core import kd
    from summ_assets.core import logits_cache as lc
    from summ_assets_tests.helpers import examples as _examples
    from summ_assets_tests.helpers import tiny_models

    t_dir, s_dir = tiny_models()
    train = _examples(s_dir, ROWS)[:4]
    spec = lc.CacheSpec("topk", 8, 16, "t", "tok", "tpl")
    teacher = AutoModelForCausalLM.from_pretrained(t_dir, dtype=torch.float32)
    cache = {r["example_key"]: r for r in lc.capture(teacher, train, spec, pad_id=0, batch_size=4)}
    grads = {}
    for batch, accum in ((4, 1), (2, 2)):
        factory, recorded = _recording(kd._trainer_cls)
        monkeypatch.setattr(kd, "_trainer_cls", factory)
        profile = replace(
            TINY,
            student=replace(TINY.student, max_steps=1, batch_size=batch, grad_accum=accum, train_tokens=()),
        )
        kd.train_student(
            s_dir,
            kd.attach_teacher(train, cache),
            [],
            profile,
            tmp_path / f"w{batch}",
            tmp_path / f"o{batch}",
            alpha=0.5,
        )
        grads[batch] = recorded[0]
    _assert_same(grads[4], grads[2])


def test_teacher_gradient_accumulation_equals_one_large_batch(tmp_path: Path, monkeypatch) -> None:
    from summ_assets.core import lora
    from summ_assets_tests.helpers import tiny_models

    t_dir, _ = tiny_models()
    grads = {}
    for batch, accum in ((4, 1), (2, 2)):
        factory, recorded = _recording(lora._sft_trainer_cls)
        monkeypatch.setattr(lora, "_sft_trainer_cls", factory)
        profile = replace(
            TINY,
            teacher=replace(
                TINY.teacher,
                max_steps=1,
                batch_size=batch,
                grad_accum=accum,
                lora_dropout=0.0,
                train_tokens=(),
            ),
        )
        lora.train_lora_teacher(
            t_dir, ROWS[:4], [], [], profile, tmp_path / f"w{batch}", tmp_path / f"o{batch}"
        )
        grads[batch] = recorded[0]
    _assert_same(grads[4], grads[2])
