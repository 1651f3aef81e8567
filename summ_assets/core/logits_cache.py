"""Teacher log-prob cache: sparse targets per summary position, in Parquet.

Schema (one row per example; the only place it is defined):

    example_key   string            sha of the token ids (rows align by content, never by order)
    section_id    string
    input_ids     list<int32>       the full prompt+summary ids the teacher scored
    positions     list<int32>       index j of each predicted summary token (row i predicts ids[j])
    target_ids    list<int32>       ids[j] (checked against the student's batch)
    token_ids     list<list<int32>> per position: top-k ids (mode=topk) or sampled unique ids
    logprobs      list<list<float16>> per position: teacher log p (topk) or log(count/N) (sampled)
    tail_logprob  list<float32>     per position: log(1 - sum p) of everything not stored (-inf if none)

File metadata (key ``summ_assets``): schema version, teacher fingerprint, tokenizer hash, chat
template hash, mode, k/N, dtype. Readers refuse a cache whose fingerprint does not match.

A cache version is a folder of shard files. A new version reuses (hard-links) the shards of the
previous version whose fingerprint matches and scores only examples whose key is new.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
META_KEY = b"summ_assets"


class CacheMismatchError(ValueError):
    pass


def schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("example_key", pa.string()),
            ("section_id", pa.string()),
            ("input_ids", pa.list_(pa.int32())),
            ("positions", pa.list_(pa.int32())),
            ("target_ids", pa.list_(pa.int32())),
            ("token_ids", pa.list_(pa.list_(pa.int32()))),
            ("logprobs", pa.list_(pa.list_(pa.float16()))),
            ("tail_logprob", pa.list_(pa.float32())),
        ]
    )


@dataclass
class CacheSpec:
    mode: str  # "topk" | "sampled"
    k: int
    n_samples: int
    teacher_fingerprint: str
    tokenizer_hash: str
    chat_template_hash: str

    def metadata(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "mode": self.mode,
            "k": self.k,
            "n_samples": self.n_samples,
            "dtype": "float16",
            "teacher_fingerprint": self.teacher_fingerprint,
            "tokenizer_hash": self.tokenizer_hash,
            "chat_template_hash": self.chat_template_hash,
            "capture_temperature": 1.0,
        }


def tail_logprob(top_logprobs: Any, eps: float = 1e-5) -> Any:
    """log(1 - sum(exp(lp))) per row, stable; -inf when the stored entries hold all but < `eps` of
    the mass (below float32 resolution of a full-vocabulary log-softmax)."""
    import torch

    lse = torch.logsumexp(top_logprobs.float(), dim=-1).clamp(max=0.0)
    tail = torch.log(-torch.expm1(lse))
    return torch.where(lse < -eps, tail, torch.full_like(tail, float("-inf")))


def sparse_targets(
    logprobs: Any, mode: str, k: int, n_samples: int, generator: Any = None
) -> tuple[Any, Any, Any]:
    """From full-vocab teacher log-probs [N, V] -> (ids [N, K'], logprobs [N, K'], tail [N]).

    topk: the k largest log-probs + the tail mass. sampled: N draws from p, unique ids with
    log(count/N) (unbiased in expectation); padded with id -1 / -inf where fewer than K' unique.
    """
    import torch

    if mode == "topk":
        lp, ids = logprobs.topk(min(k, logprobs.shape[-1]), dim=-1)
        return ids, lp, tail_logprob(lp)
    if mode == "sampled":
        draws = torch.multinomial(logprobs.float().exp(), n_samples, replacement=True, generator=generator)
        out_ids, out_lp = [], []
        for row in draws:
            uniq, counts = row.unique(return_counts=True)
            order = counts.argsort(descending=True)
            out_ids.append(uniq[order])
            out_lp.append((counts[order].float() / n_samples).log())
        width = max(len(x) for x in out_ids)
        ids = torch.full((len(out_ids), width), -1, dtype=torch.long)
        lp = torch.full((len(out_ids), width), float("-inf"))
        for i, (a, b) in enumerate(zip(out_ids, out_lp, strict=True)):
            ids[i, : len(a)] = a
            lp[i, : len(b)] = b
        return ids, lp, torch.full((len(out_ids),), float("-inf"))
    raise ValueError(f"cache mode must be 'topk' or 'sampled', got {mode!r}")


def capture(
    model: Any,
    examples: list[dict[str, Any]],
    spec: CacheSpec,
    pad_id: int,
    batch_size: int = 4,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Teacher-forced pass over `examples`; full-vocab log_softmax at T=1 (softcapping on)."""
    import torch

    from summ_assets.core.lm import completion_logits, pad_batch

    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    rows: list[dict[str, Any]] = []
    for i in range(0, len(examples), batch_size):
        chunk = examples[i : i + batch_size]
        b = {k: v.to(device) for k, v in pad_batch(chunk, pad_id).items()}
        with torch.no_grad():
            logits, targets, mask = completion_logits(model, b["input_ids"], b["attention_mask"], b["labels"])
            logp = torch.log_softmax(logits.float(), dim=-1).cpu()
        ids, lp, tail = sparse_targets(logp, spec.mode, spec.k, spec.n_samples, gen)
        offset = 0
        for r, ex in enumerate(chunk):
            n = int(mask[r].sum())
            pos = (mask[r].nonzero().squeeze(-1) + 1).tolist()
            sl = slice(offset, offset + n)
            keep = [(row_ids >= 0) for row_ids in ids[sl]]
            rows.append(
                {
                    "example_key": ex["example_key"],
                    "section_id": ex.get("section_id", ""),
                    "input_ids": [int(x) for x in ex["input_ids"]],
                    "positions": pos,
                    "target_ids": [int(ex["input_ids"][j]) for j in pos],
                    "token_ids": [row[m].tolist() for row, m in zip(ids[sl], keep, strict=True)],
                    "logprobs": [row[m].tolist() for row, m in zip(lp[sl], keep, strict=True)],
                    "tail_logprob": tail[sl].tolist(),
                }
            )
            assert int(targets[offset : offset + n].ne(torch.tensor(rows[-1]["target_ids"])).sum()) == 0
            offset += n
        if progress:
            progress(f"teacher logits {min(i + batch_size, len(examples))}/{len(examples)}")
    return rows


def write_shard(rows: list[dict[str, Any]], path: Path, spec: CacheSpec, rows_per_group: int = 256) -> int:
    """Write one shard atomically (temp file + rename): a killed writer leaves no readable file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows, schema=schema())
    table = table.replace_schema_metadata({META_KEY: json.dumps(spec.metadata()).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    pq.write_table(table, tmp, compression="zstd", compression_level=3, row_group_size=rows_per_group)
    os.replace(tmp, path)
    return path.stat().st_size


def shard_files(cache_dir: Path) -> list[Path]:
    return sorted(p for p in Path(cache_dir).glob("part-*.parquet"))


def read_metadata(path: Path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    if META_KEY not in meta:
        raise CacheMismatchError(f"{path}: not a summ-assets logit cache (no '{META_KEY.decode()}' metadata)")
    return json.loads(meta[META_KEY])


def check_compatible(meta: dict[str, Any], spec: CacheSpec, where: str) -> None:
    want = spec.metadata()
    for key in (
        "schema_version",
        "mode",
        "k",
        "n_samples",
        "teacher_fingerprint",
        "tokenizer_hash",
        "chat_template_hash",
    ):
        if meta.get(key) != want[key]:
            raise CacheMismatchError(
                f"{where}: logit cache {key}={meta.get(key)!r} but the current run expects {want[key]!r}; "
                "re-materialize teacher_logits for this teacher/tokenizer"
            )


def cached_keys(cache_dir: Path) -> dict[str, Path]:
    import pyarrow.parquet as pq

    out: dict[str, Path] = {}
    for shard in shard_files(cache_dir):
        for key in pq.read_table(shard, columns=["example_key"]).column("example_key").to_pylist():
            out[key] = shard
    return out


def load(
    cache_dir: Path, spec: CacheSpec | None = None, keys: set[str] | None = None
) -> dict[str, dict[str, Any]]:
    """{example_key: row} for the cache folder (all shards), verifying metadata against `spec`."""
    import pyarrow.parquet as pq

    out: dict[str, dict[str, Any]] = {}
    for shard in shard_files(cache_dir):
        if spec is not None:
            check_compatible(read_metadata(shard), spec, str(shard))
        for row in pq.read_table(shard).to_pylist():
            if keys is None or row["example_key"] in keys:
                out[row["example_key"]] = row
    return out


def stats(cache_dir: Path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    n_rows = n_pos = n_pairs = 0
    for shard in shard_files(cache_dir):
        t = pq.read_table(shard, columns=["positions", "token_ids"])
        n_rows += t.num_rows
        n_pos += sum(len(x) for x in t.column("positions").to_pylist())
        n_pairs += sum(sum(len(y) for y in x) for x in t.column("token_ids").to_pylist())
    size = sum(p.stat().st_size for p in shard_files(cache_dir))
    return {
        "examples": n_rows,
        "positions": n_pos,
        "pairs": n_pairs,
        "bytes": size,
        "bytes_per_position": size / n_pos if n_pos else math.nan,
        "shards": len(shard_files(cache_dir)),
    }


def link_or_copy(src: Path, dst: Path) -> None:
    import shutil

    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
