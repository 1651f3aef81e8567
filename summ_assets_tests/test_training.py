"""Teacher LoRA training and student distillation on the tiny models: resume, loss, errors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from summ_assets.core.profiles import TINY
from summ_assets_tests.helpers import examples as _examples
from summ_assets_tests.helpers import tiny_models

ROWS = [
    {
        "section_id": f"s{i}",
        "text": f"섹션 {i}: 검색 단계는 질의를 임베딩하고 상위 문서를 고른다. 번호 {i}.",
        "summary": f"검색 단계 {i}는 상위 문서를 고른다.",
    }
    for i in range(16)
]


def changed_embedding_rows(before_dir: Path, after_dir: Path) -> list[int]:
    """Rows of the input embedding that differ between two saved models."""
    import torch
    from transformers import AutoModelForCausalLM

    a, b = (
        AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).get_input_embeddings().weight
        for d in (before_dir, after_dir)
    )
    return torch.nonzero((a != b).any(dim=1)).flatten().tolist()


def _eot(tok_dir: Path) -> int:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tok_dir).convert_tokens_to_ids("<end_of_turn>")


def crash_at_step(trainer_cls_factory, step: int):
    """A stand-in for a module's trainer-class factory whose trainers raise KeyboardInterrupt (a
    simulated crash) at the end of optimizer step `step`."""
    from transformers import TrainerCallback

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == step:
                raise KeyboardInterrupt("simulated crash")

    def factory():
        base = trainer_cls_factory()

        class Crashing(base):
            def __init__(self, *a, callbacks=None, **kw):
                super().__init__(*a, callbacks=[*(callbacks or []), Crash()], **kw)

        return Crashing

    return factory


def test_teacher_training_resumes_from_the_last_checkpoint_after_a_crash(tmp_path: Path, monkeypatch) -> None:

    from summ_assets.core import lora

    t_dir, _ = tiny_models()
    profile = replace(
        TINY,
        teacher=replace(TINY.teacher, epochs=2, batch_size=4, save_steps=2, train_tokens=("<end_of_turn>",)),
    )
    val = _examples(t_dir, ROWS[:4])

    real_cls = lora._sft_trainer_cls
    crashing_cls = crash_at_step(real_cls, 5)
    work = tmp_path / "work"
    monkeypatch.setattr(lora, "_sft_trainer_cls", crashing_cls)
    with pytest.raises(KeyboardInterrupt):
        lora.train_lora_teacher(t_dir, ROWS, val, ROWS[:4], profile, work, tmp_path / "out1")
    assert lora.last_checkpoint(work).endswith("checkpoint-4")
    monkeypatch.setattr(lora, "_sft_trainer_cls", real_cls)
    metrics = lora.train_lora_teacher(t_dir, ROWS, val, ROWS[:4], profile, work, tmp_path / "out2")
    assert metrics["resumed_from"].endswith("checkpoint-4")
    assert metrics["steps"] == 8  # 16 rows / batch 4 * 2 epochs: the resumed run finishes the plan
    assert (tmp_path / "out2" / "adapter" / "adapter_model.safetensors").exists()
    assert (tmp_path / "out2" / "merged" / "model.safetensors").exists()
    # the frozen embedding learned exactly one row, <end_of_turn> (profile.teacher.train_tokens)
    assert changed_embedding_rows(t_dir, tmp_path / "out2" / "merged") == [_eot(t_dir)]
    assert not work.exists()  # checkpoints are cleaned up after success


def test_qlora_on_cpu_is_a_clear_error(tmp_path: Path) -> None:
    from summ_assets.core.lora import train_lora_teacher

    t_dir, _ = tiny_models()
    profile = replace(TINY, teacher=replace(TINY.teacher, load_in_4bit=True))
    with pytest.raises(RuntimeError, match="QLoRA.*needs CUDA"):
        train_lora_teacher(t_dir, ROWS, [], [], profile, tmp_path / "w", tmp_path / "o")


def test_kd_student_needs_every_cache_row_and_learns(tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from summ_assets.core import logits_cache as lc
    from summ_assets.core.kd import CacheAlignmentError, attach_teacher, train_student

    t_dir, s_dir = tiny_models()
    train = _examples(s_dir, ROWS)
    spec = lc.CacheSpec("topk", 8, 16, "t", "tok", "tpl")
    teacher = AutoModelForCausalLM.from_pretrained(t_dir, dtype=torch.float32)
    cache = {r["example_key"]: r for r in lc.capture(teacher, train, spec, pad_id=0, batch_size=8)}
    with pytest.raises(CacheAlignmentError, match="has no row in the teacher logit cache"):
        attach_teacher(train, {k: v for k, v in list(cache.items())[1:]})
    broken = dict(cache)
    k0 = train[0]["example_key"]
    broken[k0] = {**cache[k0], "positions": cache[k0]["positions"][1:]}
    with pytest.raises(CacheAlignmentError, match="do not match"):
        attach_teacher(train, broken)
    profile = replace(
        TINY,
        student=replace(
            TINY.student, epochs=3, learning_rate=5e-3, save_steps=1000, train_tokens=("<end_of_turn>",)
        ),
    )
    m = train_student(
        s_dir, attach_teacher(train, cache), train[:4], profile, tmp_path / "w", tmp_path / "o", alpha=0.5
    )
    assert m["val_loss"] < m["base_val_loss"]
    assert m["kd_ce_curve"] and all(kd >= 0 for _, kd, _ in m["kd_ce_curve"])
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "o", torch_dtype=torch.float32, device_map="auto")
    # the folder carries the profile's decoding settings for plain from_pretrained + generate users
    from transformers import GenerationConfig

    gen = GenerationConfig.from_pretrained(tmp_path / "o")
    ev = profile.eval
    assert gen.summ_generated_no_repeat_ngram_size == ev.no_repeat_ngram_size
    assert gen.repetition_penalty == ev.repetition_penalty and not gen.no_repeat_ngram_size
    assert gen.max_new_tokens == ev.max_new_tokens and _eot(s_dir) in gen.eos_token_id
    # frozen embedding except the rows named in train_tokens (gradient mask, tied LM head included)
    assert changed_embedding_rows(s_dir, tmp_path / "o") == [_eot(s_dir)]
    base = AutoModelForCausalLM.from_pretrained(s_dir)
    hidden, n_emb = base.config.hidden_size, base.get_input_embeddings().weight.numel()
    assert m["trainable_parameters"] == m["parameters"] - n_emb + hidden


def test_train_tokens_must_be_tokens_of_the_tokenizer() -> None:
    from transformers import AutoTokenizer

    from summ_assets.core.models import token_ids

    _, s_dir = tiny_models()
    tok = AutoTokenizer.from_pretrained(s_dir)
    assert token_ids(tok, ["<end_of_turn>"]) == [_eot(s_dir)]
    with pytest.raises(ValueError, match="train_tokens: '<end_of_conversation>' is not a token"):
        token_ids(tok, ["<end_of_conversation>"])


def test_student_selection_on_val_rouge_stops_early_and_keeps_the_best_epoch(
    tmp_path: Path, monkeypatch
) -> None:
    import torch
    from safetensors.torch import load_file

    from summ_assets.core import early_stopping
    from summ_assets.core.kd import train_student

    _, s_dir = tiny_models()
    train = _examples(s_dir, ROWS)
    snapshots: list[dict[str, torch.Tensor]] = []
    scores = iter([0.30, 0.50, 0.40, 0.45, 0.10])  # best after epoch 2, then two epochs without gain

    def fake_scorer(model) -> float:
        snapshots.append({n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad})
        return next(scores)

    real = early_stopping.rouge_selection_callback

    def with_fake(*a, **kw):
        return real(*a, **kw, scorer=fake_scorer)

    profile = replace(
        TINY,
        student=replace(
            TINY.student, epochs=5, learning_rate=5e-3, save_steps=1000, early_stopping_patience=2
        ),
    )
    monkeypatch.setattr(early_stopping, "rouge_selection_callback", with_fake)
    m = train_student(
        s_dir, train, train[:4], profile, tmp_path / "w", tmp_path / "o", alpha=0.0, val_rows=ROWS[:4]
    )
    assert [s for _, s in m["val_rouge_by_epoch"]] == [0.30, 0.50, 0.40, 0.45]  # stopped after epoch 4
    assert m["selected_epoch"] == 2.0
    saved_weights = load_file(str(tmp_path / "o" / "model.safetensors"))
    best = snapshots[1]
    name = next(n for n in best if "layers.0" in n and "weight" in n)
    key = name if name in saved_weights else name.removeprefix("model.")
    assert torch.equal(saved_weights[key], best[name])
    assert not torch.equal(snapshots[3][name], best[name])  # training did move the weights after epoch 2


def test_trained_rows_act_like_the_merged_rows_and_only_they_get_gradients() -> None:
    """The delta rows (forward hooks on the embedding and the tied LM head) give the same logits as the
    model with the delta folded into its weights; the frozen embedding gets no gradient."""
    import torch
    from transformers import AutoModelForCausalLM

    from summ_assets.core.kd import freeze_embeddings
    from summ_assets.core.models import merge_embedding_rows, train_embedding_rows

    _, s_dir = tiny_models()
    eot = _eot(s_dir)
    model = AutoModelForCausalLM.from_pretrained(s_dir, dtype=torch.float32)
    freeze_embeddings(model)
    other = eot + 3
    rows = train_embedding_rows(model, [other, eot, other])  # a repeated id counts once
    torch.manual_seed(0)
    with torch.no_grad():
        rows.delta_in.normal_(0, 0.5)
    assert rows.delta_in.shape[0] == 2
    ids = torch.tensor([[2, 7, eot, 9, other, eot]])
    hooked = model(ids).logits
    hooked.sum().backward()
    assert model.get_input_embeddings().weight.grad is None
    assert rows.delta_in.grad is not None and rows.delta_in.grad.abs().sum() > 0
    merge_embedding_rows(model)
    assert not hasattr(model, "summ_trained_rows")
    merged = model(ids).logits
    torch.testing.assert_close(hooked, merged, rtol=1e-4, atol=1e-4)
    plain = AutoModelForCausalLM.from_pretrained(s_dir, dtype=torch.float32)
    assert not torch.allclose(plain(ids).logits, merged, atol=1e-3)  # the delta did change the model


def test_student_resumed_after_a_crash_ends_where_an_uninterrupted_run_ends(
    tmp_path: Path, monkeypatch
) -> None:
    """Checkpoints carry the trained embedding rows: crash at step 5, resume from checkpoint-4, and
    the saved student equals the one of a run that never stopped (rows included)."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from summ_assets.core import kd

    _, s_dir = tiny_models()
    train = _examples(s_dir, ROWS)
    profile = replace(
        TINY,
        student=replace(
            TINY.student,
            epochs=2,
            batch_size=4,
            save_steps=2,
            learning_rate=5e-3,
            train_tokens=("<end_of_turn>",),
        ),
    )

    real_cls = kd._trainer_cls
    crashing_cls = crash_at_step(real_cls, 5)
    work = tmp_path / "work"
    monkeypatch.setattr(kd, "_trainer_cls", crashing_cls)
    with pytest.raises(KeyboardInterrupt):
        kd.train_student(s_dir, train, [], profile, work, tmp_path / "crashed", alpha=0.0)
    saved = load_file(str(work / "checkpoint-4" / "model.safetensors"))
    assert saved["summ_trained_rows.delta_in"].abs().sum() > 0
    monkeypatch.setattr(kd, "_trainer_cls", real_cls)
    m = kd.train_student(s_dir, train, [], profile, work, tmp_path / "resumed", alpha=0.0)
    assert m["resumed_from"].endswith("checkpoint-4") and m["steps"] == 8
    kd.train_student(s_dir, train, [], profile, tmp_path / "work2", tmp_path / "straight", alpha=0.0)
    resumed, straight = (
        AutoModelForCausalLM.from_pretrained(tmp_path / d, dtype=torch.float32).state_dict()
        for d in ("resumed", "straight")
    )
    assert resumed.keys() == straight.keys() and not any("summ_trained_rows" in k for k in resumed)
    for k in resumed:
        torch.testing.assert_close(resumed[k], straight[k], rtol=1e-4, atol=1e-5, msg=k)


def test_val_loss_is_the_same_whatever_the_example_order() -> None:
    """`completion_nats` batches by length (less padding); the sum must not depend on the order."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from summ_assets.core.examples import build_examples
    from summ_assets.core.lm import completion_nats

    _, s_dir = tiny_models()
    tok = AutoTokenizer.from_pretrained(s_dir)
    model = AutoModelForCausalLM.from_pretrained(s_dir, dtype=torch.float32)
    rows = [
        {"section_id": str(i), "text": "본문 " * (3 + 7 * i % 23), "summary": "요약 " * (1 + i % 4)}
        for i in range(11)
    ]
    ex = build_examples(rows, tok, 128, 16)
    a, n_a = completion_nats(model, ex, tok.pad_token_id, batch_size=3)
    b, n_b = completion_nats(model, ex[::-1], tok.pad_token_id, batch_size=3)
    assert n_a == n_b and a == pytest.approx(b, rel=1e-5)
