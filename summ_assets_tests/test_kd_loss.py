from __future__ import annotations

import pytest
import torch

from summ_assets.core.kd import dense_kd_loss, sparse_kd_loss
from summ_assets.core.logits_cache import sparse_targets, tail_logprob

V = 50


def _pair(seed: int = 0, n: int = 7):
    g = torch.Generator().manual_seed(seed)
    teacher = torch.log_softmax(torch.randn(n, V, generator=g) * 2, -1)
    student = torch.randn(n, V, generator=g, requires_grad=True)
    return teacher, student


@pytest.mark.parametrize("divergence", ["forward_kl", "reverse_kl", "jsd"])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_sparse_equals_dense_when_the_cache_holds_the_full_support(
    divergence: str, temperature: float
) -> None:
    teacher, student = _pair()
    ids, lp, tail = sparse_targets(teacher, "topk", V, 0, temperature=temperature)  # captured at T
    sparse = sparse_kd_loss(student, ids, lp, tail, temperature=temperature, divergence=divergence)
    dense = dense_kd_loss(student, teacher, temperature, divergence)
    assert torch.allclose(sparse, dense, atol=1e-5), (sparse, dense)


def test_topk_with_tail_bucket_is_exact_on_its_support_and_sums_to_one() -> None:
    teacher, _ = _pair(1)
    ids, lp, tail = sparse_targets(teacher, "topk", 8, 0)
    total = lp.float().exp().sum(-1) + tail.exp()
    assert torch.allclose(total, torch.ones_like(total), atol=1e-3)
    assert torch.allclose(lp, teacher.gather(-1, ids))


def test_topk_kd_approaches_dense_as_k_grows_and_is_zero_for_identical_models() -> None:
    teacher, student = _pair(2)
    dense = dense_kd_loss(student, teacher)
    errs = []
    for k in (4, 16, 40):
        ids, lp, tail = sparse_targets(teacher, "topk", k, 0)
        errs.append(abs(sparse_kd_loss(student, ids, lp, tail).item() - dense.item()))
    assert errs[0] > errs[-1] and errs[-1] < 0.05
    ids, lp, tail = sparse_targets(teacher, "topk", 8, 0)
    same = sparse_kd_loss(teacher.detach().clone(), ids, lp, tail)
    assert float(same) == pytest.approx(0.0, abs=1e-5)


def test_sampled_target_frequencies_estimate_the_teacher() -> None:
    teacher, _ = _pair(3, n=1)
    gen = torch.Generator().manual_seed(0)
    est = torch.zeros(V)
    rounds = 400
    for _ in range(rounds):
        ids, lp, tail = sparse_targets(teacher, "sampled", 0, 50, gen)
        valid = ids[0] >= 0
        est.index_add_(0, ids[0][valid], lp[0][valid].exp())
        assert torch.isinf(tail).all()
    est /= rounds
    assert torch.allclose(est, teacher[0].exp(), atol=0.02)


@pytest.mark.parametrize("divergence", ["forward_kl", "reverse_kl", "jsd"])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_gradients_are_finite_with_padding_and_minus_inf(divergence: str, temperature: float) -> None:
    teacher, student = _pair(4)
    ids, lp, tail = sparse_targets(teacher, "topk", 6, 0)
    ids[0, 3:] = -1  # padded slots
    lp[0, 3:] = float("-inf")
    lp[1, 0] = float("-inf")  # a stored id with zero probability
    tail[2] = float("-inf")  # nothing outside the stored ids
    loss = sparse_kd_loss(student, ids, lp, tail, temperature=temperature, divergence=divergence)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(student.grad).all()


def test_tail_logprob_of_a_complete_distribution_is_minus_inf() -> None:
    full = torch.log_softmax(torch.randn(3, 5), -1)
    assert torch.isinf(tail_logprob(full)).all()
    part = full.topk(2, -1).values
    assert torch.allclose(tail_logprob(part).exp() + part.exp().sum(-1), torch.ones(3), atol=1e-5)


def test_sharing_the_ce_log_softmax_gives_the_same_loss() -> None:
    teacher, student = _pair(5)
    ids, lp, tail = sparse_targets(teacher, "topk", 8, 0)
    alone = sparse_kd_loss(student, ids, lp, tail)
    shared = sparse_kd_loss(student, ids, lp, tail, student_logq=torch.log_softmax(student, -1))
    assert torch.equal(alone, shared)


def test_unknown_divergence_is_rejected() -> None:
    teacher, student = _pair()
    ids, lp, tail = sparse_targets(teacher, "topk", 4, 0)
    with pytest.raises(ValueError, match="divergence must be one of"):
        sparse_kd_loss(student, ids, lp, tail, divergence="tvd")
