from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from summ_assets.core import logits_cache as lc
from summ_assets_tests.helpers import tiny_models, tiny_tokenizer


def _spec(tok_hash: str = "tok", mode: str = "topk") -> lc.CacheSpec:
    return lc.CacheSpec(
        mode=mode,
        k=8,
        n_samples=16,
        teacher_fingerprint="teach",
        tokenizer_hash=tok_hash,
        chat_template_hash="tpl",
    )


def _examples(n: int = 5) -> list[dict]:
    from summ_assets.core.examples import build_examples

    rows = [
        {
            "section_id": f"s{i}",
            "text": f"섹션 {i} 본문입니다. 내용이 조금 있다.",
            "summary": f"요약 {i}이다.",
        }
        for i in range(n)
    ]
    return build_examples(rows, tiny_tokenizer(), 64, 16)


@pytest.mark.parametrize("mode", ["topk", "sampled"])
def test_capture_round_trips_exactly_through_parquet(tmp_path: Path, mode: str) -> None:
    from transformers import AutoModelForCausalLM

    t_dir, _ = tiny_models()
    model = AutoModelForCausalLM.from_pretrained(t_dir, dtype=torch.float32)
    examples = _examples()
    spec = _spec(mode=mode)
    rows = lc.capture(model, examples, spec, pad_id=0, batch_size=2)
    lc.write_shard(rows, tmp_path / "part-a.parquet", spec)
    back = lc.load(tmp_path, spec)
    assert set(back) == {e["example_key"] for e in examples}
    for r in rows:
        b = back[r["example_key"]]
        assert b["positions"] == r["positions"] and b["token_ids"] == r["token_ids"]
        # float16 storage: values equal after the same fp16 rounding
        for x, y in zip(b["logprobs"], r["logprobs"], strict=True):
            assert torch.equal(torch.tensor(x, dtype=torch.float16), torch.tensor(y, dtype=torch.float16))
        for lp, tail in zip(b["logprobs"], b["tail_logprob"], strict=True):
            total = sum(math.exp(v) for v in lp) + (math.exp(tail) if tail > -1e30 else 0.0)
            assert abs(total - 1.0) < 1e-3
    meta = lc.read_metadata(tmp_path / "part-a.parquet")
    assert meta["mode"] == mode and meta["schema_version"] == lc.SCHEMA_VERSION
    assert (
        pq.read_table(tmp_path / "part-a.parquet").schema.field("token_ids").type.value_type.value_type
        == "int32"
    )


def test_a_cache_from_another_tokenizer_is_refused(tmp_path: Path) -> None:
    rows = [
        {
            "example_key": "k",
            "section_id": "s",
            "input_ids": [2, 3, 4],
            "positions": [2],
            "target_ids": [4],
            "token_ids": [[4, 5]],
            "logprobs": [[-0.1, -3.0]],
            "tail_logprob": [-5.0],
        }
    ]
    lc.write_shard(rows, tmp_path / "part-a.parquet", _spec("tok-A"))
    with pytest.raises(lc.CacheMismatchError, match="tokenizer_hash='tok-A'"):
        lc.load(tmp_path, _spec("tok-B"))


def test_a_killed_writer_leaves_no_readable_partial_file(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os, signal
        import pyarrow.parquet as pq
        from summ_assets.core import logits_cache as lc
        real = pq.write_table
        def dying(table, where, **kw):
            with open(where, "wb") as fh:
                fh.write(b"PAR1 partial")
            os.kill(os.getpid(), signal.SIGKILL)
        pq.write_table = dying
        spec = lc.CacheSpec("topk", 8, 16, "t", "tok", "tpl")
        rows = [dict(example_key="k", section_id="s", input_ids=[1], positions=[0], target_ids=[1],
                     token_ids=[[1]], logprobs=[[-0.1]], tail_logprob=[-2.0])]
        lc.write_shard(rows, __import__("pathlib").Path({str(tmp_path)!r}) / "part-x.parquet", spec)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], env={**os.environ}, capture_output=True)
    assert proc.returncode != 0
    assert lc.shard_files(tmp_path) == []  # only a hidden temp file may remain, never part-*.parquet
    assert lc.load(tmp_path) == {}
