"""Teacher log-prob cache: sparse targets per summary position, in Parquet.

Schema (one row per example; the only place it is defined):

    example_key   string            sha of the token ids (rows align by content, never by order)
    section_id    string
    input_ids     list<int32>       the full prompt+summary ids the teacher scored
    positions     list<int32>       index j of each predicted summary token (row i predicts ids[j])
    target_ids    list<int32>       ids[j] (checked against the student's batch)
    token_ids     list<list<int32>> per position: top-k ids (mode=topk) or sampled unique ids
    logprobs      list<list<float16>> per position: teacher log p_T (topk) or log(count/N) (sampled)
    tail_logprob  list<float32>     per position: log(1 - sum p_T) of everything not stored (-inf if none)

p_T = softmax(z / T) is the teacher at the *capture temperature* T (the student's KD temperature):
top-k stores the exact tempered log-probs of the k most likely ids and the exact tempered mass of
all the others (one tail bucket); sampled stores N draws from p_T. Capturing at the training
temperature is what makes KD at T exact (see `core/kd.py`); a T=1 cache cannot be re-tempered
exactly, because the tail's tempered mass depends on how the tail is spread.

File metadata (key ``summ_assets``): schema version, teacher fingerprint, tokenizer hash, chat
template hash, mode, k/N, capture temperature, dtype. Readers refuse a cache whose spec does not
match.

A cache version is a folder of shard files. A new version reuses (hard-links) the shards of the
previous version whose fingerprint matches and scores only examples whose key is new.

Every reader raises `CacheCorruptError` (naming the file and the fix) for a shard a disk truncated or
damaged, never a raw pyarrow exception and never a half-read cache; `verify` and `shard_problem`
say whether a folder / one shard is whole.
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

from summ_assets.core.artifacts import atomic_dir, stable_json_hash
from summ_assets.core.integrity import check_parquet_files, rebuild_hint
from summ_assets.core.lm import completion_logits, pad_batch

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
META_KEY = b"summ_assets"


class CacheMismatchError(ValueError):
    pass


class CacheCorruptError(CacheMismatchError):
    """A cache file cannot be read: truncated, damaged or lost after it was written."""


def _corrupt(path: Path, exc: BaseException | str) -> CacheCorruptError:
    reason = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, FileNotFoundError):
        reason = "the file is missing"
    fix = rebuild_hint(Path(path), otherwise=f"delete {Path(path).parent} and score the cache again")
    return CacheCorruptError(f"{path}: teacher-logit cache file is truncated or damaged ({reason}); {fix}")


def _read_errors() -> tuple[type[BaseException], ...]:
    import pyarrow as pa

    # ArrowInvalid is a ValueError; OSError covers a lost file and pyarrow's IO errors
    return (pa.ArrowException, OSError, ValueError)


def _read_table(path: Path, columns: list[str] | None = None) -> Any:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path, columns=columns)
    except _read_errors() as exc:
        raise _corrupt(path, exc) from exc


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
    capture_temperature: float = 1.0  # the teacher is stored as softmax(z / capture_temperature)

    @classmethod
    def from_metadata(cls, meta: dict[str, Any]) -> CacheSpec:
        """The spec a cache's metadata (or an asset output's ``spec``) was written with."""
        return cls(**{f: meta[f] for f in cls.__dataclass_fields__})

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
            "capture_temperature": float(self.capture_temperature),
        }


def tail_logprob(top_logprobs: Any, eps: float = 1e-5) -> Any:
    """log(1 - sum(exp(lp))) per row, stable; -inf when the stored entries hold all but < `eps` of
    the mass (below float32 resolution of a full-vocabulary log-softmax)."""
    import torch

    lse = torch.logsumexp(top_logprobs.float(), dim=-1).clamp(max=0.0)
    tail = torch.log(-torch.expm1(lse))
    return torch.where(lse < -eps, tail, torch.full_like(tail, float("-inf")))


def sparse_targets(
    logprobs: Any, mode: str, k: int, n_samples: int, generator: Any = None, temperature: float = 1.0
) -> tuple[Any, Any, Any]:
    """From full-vocab teacher log-probs [N, V] (at T=1) -> (ids [N, K'], logprobs [N, K'], tail [N])
    of the teacher at `temperature`, p_T = softmax(log p / T).

    topk: the k largest log p_T (the same ids as the k largest log p) + the exact tail mass.
    sampled: N draws from p_T, unique ids with log(count/N): count/N is an unbiased estimate of p_T,
    so the forward-KL gradient at this temperature, which is linear in the target, is unbiased too;
    anything nonlinear in the target (re-tempering the counts, renormalizing them, reverse KL, JSD)
    is not, and `core/kd.py` refuses it. Padded with id -1 / -inf where fewer than K' unique ids.
    """
    import torch

    if temperature != 1.0:
        logprobs = torch.log_softmax(logprobs.float() / temperature, dim=-1)
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
    """Teacher-forced pass over `examples`; full-vocab log_softmax (softcapping on), stored at the
    spec's capture temperature."""
    import torch

    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    rows: list[dict[str, Any]] = []
    for i in range(0, len(examples), batch_size):
        chunk = examples[i : i + batch_size]
        b = {k: v.to(device) for k, v in pad_batch(chunk, pad_id).items()}
        with torch.no_grad():
            logits, targets, mask = completion_logits(model, b["input_ids"], b["attention_mask"], b["labels"])
            logp = torch.log_softmax(logits.float(), dim=-1)
            if spec.mode == "sampled":
                logp = logp.cpu()  # the sampler's generator lives on the CPU: the same draws on any device
            # top-k on the model's device: only [N, k] leaves a GPU, not the full [N, vocab] log-probs
            ids, lp, tail = (
                t.cpu()
                for t in sparse_targets(
                    logp, spec.mode, spec.k, spec.n_samples, gen, temperature=spec.capture_temperature
                )
            )
        targets, mask = targets.cpu(), mask.cpu()
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

    try:
        meta = pq.read_schema(path).metadata or {}
    except _read_errors() as exc:
        raise _corrupt(path, exc) from exc
    if META_KEY not in meta:
        raise CacheMismatchError(f"{path}: not a summ-assets logit cache (no '{META_KEY.decode()}' metadata)")
    try:
        out = json.loads(meta[META_KEY])
    except ValueError as exc:
        raise _corrupt(path, f"unreadable '{META_KEY.decode()}' metadata: {exc}") from exc
    if not isinstance(out, dict):
        raise _corrupt(path, f"'{META_KEY.decode()}' metadata is not a JSON object")
    return out


def shard_problem(path: Path) -> str | None:
    """None when the shard file is whole (footer, every row group, summ-assets metadata), else what is wrong."""
    path = Path(path)
    if problem := check_parquet_files([path]):
        return problem
    try:
        read_metadata(path)
    except CacheMismatchError as exc:
        return f"{path.name}: {str(exc).removeprefix(f'{path}: ')}"
    return None


def verify(cache_dir: Path, keys: set[str] | list[str] | None = None) -> str | None:
    """None when the cache folder is whole, else the first problem, naming the file: a shard that does
    not read (truncated, damaged) or, when `keys` are given, expected examples that no shard holds
    (a lost shard). Without `keys` a folder with no shard at all is damaged."""
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        return "folder missing"
    shards = shard_files(cache_dir)
    if not shards and (keys is None or len(keys) > 0):
        return "no part-*.parquet shard file"
    for shard in shards:
        if problem := shard_problem(shard):
            return problem
    if keys is not None:
        missing = set(keys) - set(cached_keys(cache_dir))
        if missing:
            return f"{len(missing)} example(s) in no shard (a shard file is missing): {_preview(missing)}"
    return None


def reusable_keys(
    cache_dir: Path, spec: CacheSpec, on_damaged: Callable[[str], None] | None = None
) -> dict[str, Path]:
    """{example_key: shard} of the whole shards of `cache_dir`, each checked against `spec`. A damaged
    shard is skipped (`on_damaged` hears which file and why; its examples are simply not reused).
    Raises CacheMismatchError when a shard was written for another spec."""
    out: dict[str, Path] = {}
    for shard in shard_files(cache_dir):
        if problem := shard_problem(shard):
            if on_damaged is not None:
                on_damaged(f"{shard} is damaged ({problem}); not reusing it, its examples are scored again")
            continue
        check_compatible(read_metadata(shard), spec, str(shard))
        for key in shard_part_keys(shard):
            out[key] = shard
    return out


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
        "capture_temperature",
    ):
        if meta.get(key) != want[key]:
            raise CacheMismatchError(
                f"{where}: logit cache {key}={meta.get(key)!r} but the current run expects {want[key]!r}; "
                "re-materialize teacher_logits for this teacher/tokenizer"
            )


def cached_keys(cache_dir: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for shard in shard_files(cache_dir):
        for key in shard_part_keys(shard):
            out[key] = shard
    return out


def load(
    cache_dir: Path, spec: CacheSpec | None = None, keys: set[str] | None = None
) -> dict[str, dict[str, Any]]:
    """{example_key: row} for the cache folder (all shards), verifying metadata against `spec`.
    A shard that does not read raises CacheCorruptError (nothing is returned half-read)."""
    out: dict[str, dict[str, Any]] = {}
    for shard in shard_files(cache_dir):
        if spec is not None:
            check_compatible(read_metadata(shard), spec, str(shard))
        for row in _read_table(shard).to_pylist():
            if keys is None or row["example_key"] in keys:
                out[row["example_key"]] = row
    return out


def stats(cache_dir: Path) -> dict[str, Any]:
    n_rows = n_pos = n_pairs = 0
    for shard in shard_files(cache_dir):
        t = _read_table(shard, columns=["positions", "token_ids"])
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


# --- sharded writing: a cluster scores disjoint shards of examples, one merge publishes them -------------
#
# An example belongs to shard `shard_index(example_key, n)` (a hash, so the assignment is the same on
# every machine and does not depend on example order). Each shard is one Parquet file in a staging
# folder, written independently (`write_shard_part`, atomic per file) by whoever scores it — one rank
# of `torchrun`, one Pipes pod, one loop iteration. `merge_shards` checks that every shard is present,
# carries the expected spec and exactly the expected keys, and only then publishes the cache folder in
# one rename (all or nothing; the previous folder stays as it was on any error).


class ShardMergeError(CacheMismatchError):
    """A sharded cache cannot be merged: missing shard, wrong spec, duplicate/missing/stray keys."""


def shard_index(example_key: str, num_shards: int) -> int:
    """Deterministic shard of an example: sha256(example_key) mod `num_shards`."""
    import hashlib

    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    return int(hashlib.sha256(example_key.encode()).hexdigest()[:12], 16) % num_shards


def split_into_shards(examples: list[dict[str, Any]], num_shards: int) -> list[list[dict[str, Any]]]:
    """`examples` (dicts with "example_key") grouped by shard; input order kept inside a shard."""
    out: list[list[dict[str, Any]]] = [[] for _ in range(num_shards)]
    for ex in examples:
        out[shard_index(ex["example_key"], num_shards)].append(ex)
    return out


def shard_part_path(staging: Path, index: int, num_shards: int) -> Path:
    return Path(staging) / f"shard-{index:05d}-of-{num_shards:05d}.parquet"


def write_shard_part(
    rows: list[dict[str, Any]],
    staging: Path,
    index: int,
    num_shards: int,
    spec: CacheSpec,
    rows_per_group: int = 256,
) -> Path:
    """Write shard `index` of `num_shards` into `staging` (an empty shard is written too: present
    means done). Refuses rows that belong to another shard."""
    wrong = [r["example_key"] for r in rows if shard_index(r["example_key"], num_shards) != index]
    if wrong:
        raise ShardMergeError(
            f"shard {index}/{num_shards}: {len(wrong)} row(s) belong to other shards (first: {wrong[0]}); "
            "split the examples with split_into_shards(examples, num_shards)"
        )
    path = shard_part_path(staging, index, num_shards)
    write_shard(rows, path, spec, rows_per_group)
    return path


def shard_part_keys(path: Path) -> list[str]:
    return _read_table(path, columns=["example_key"]).column("example_key").to_pylist()


def _preview(keys: Any, n: int = 3) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def merge_shards(
    staging: Path,
    target: Path,
    spec: CacheSpec,
    num_shards: int,
    expected_keys: set[str] | list[str],
    reuse: list[Path] | tuple[Path, ...] = (),
) -> dict[str, Any]:
    """Publish the `num_shards` shard files in `staging` (+ already-cached `reuse` shard files) as the
    cache folder `target`, atomically (temp folder + rename; an existing `target` is replaced only on
    success).

    Refuses, with a ShardMergeError naming the shard/file and what to do: a missing or damaged shard
    file, a shard file of another split (different shard count), a spec/fingerprint that differs from `spec`,
    a row in the wrong shard, a key present twice (within or across shards, or also in `reuse`), a key
    of `expected_keys` that no shard holds, or a key that was not expected.
    Returns {"shards", "rows", "files"}.
    """

    staging, target = Path(staging), Path(target)
    expected = set(expected_keys)
    paths = [shard_part_path(staging, i, num_shards) for i in range(num_shards)]
    missing = [i for i, p in enumerate(paths) if not p.exists()]
    if missing:
        raise ShardMergeError(
            f"{staging}: shard(s) {missing} of {num_shards} missing; score those shards again "
            f"(write_shard_part(..., index, {num_shards}, ...)) before merging — {target} was not touched"
        )
    stray = sorted(
        p.name for p in staging.glob("shard-*.parquet") if p not in set(paths) and not p.name.startswith(".")
    )
    if stray:
        raise ShardMergeError(
            f"{staging}: shard files of another split ({', '.join(stray[:3])}) next to a {num_shards}-way split; "
            "use a fresh staging folder per split"
        )
    seen: dict[str, str] = {}
    for f in reuse:
        check_compatible(read_metadata(Path(f)), spec, str(f))
        for key in shard_part_keys(Path(f)):
            seen.setdefault(key, str(f))
    reused_keys = set(seen)
    per_shard: list[list[str]] = []
    for i, p in enumerate(paths):
        if problem := shard_problem(p):
            raise ShardMergeError(
                f"shard {i}/{num_shards}: {p} is damaged ({problem}); delete it and score shard {i} again "
                f"— {target} was not touched"
            )
        try:
            check_compatible(read_metadata(p), spec, str(p))
        except CacheMismatchError as exc:
            raise ShardMergeError(f"shard {i}/{num_shards}: {exc}") from exc
        keys = shard_part_keys(p)
        for key in keys:
            if shard_index(key, num_shards) != i:
                raise ShardMergeError(f"{p}: example {key} belongs to shard {shard_index(key, num_shards)}")
            if key in seen:
                raise ShardMergeError(
                    f"duplicate example {key}: in {p} and in {seen[key]}; re-score one shard into a fresh staging folder"
                )
            seen[key] = str(p)
        per_shard.append(keys)
    new_keys = set(seen) - reused_keys
    lost = expected - set(seen)
    if lost:
        by_shard = sorted({shard_index(k, num_shards) for k in lost})
        raise ShardMergeError(
            f"{len(lost)} expected example(s) are in no shard (shards {by_shard} are incomplete): "
            f"{_preview(lost)}; re-score those shards — {target} was not touched"
        )
    extra = new_keys - expected
    if extra:
        raise ShardMergeError(
            f"{len(extra)} example(s) in the shards were not expected: {_preview(extra)}; the shards were "
            "scored for another dataset — use a fresh staging folder"
        )
    files = 0
    with atomic_dir(target) as tmp:
        for f in reuse:
            link_or_copy(Path(f), tmp / Path(f).name)
            files += 1
        for p, keys in zip(paths, per_shard, strict=True):
            if keys:
                link_or_copy(p, tmp / f"part-{stable_json_hash(sorted(keys))[:16]}.parquet")
                files += 1
    return {"shards": num_shards, "rows": len(seen), "files": files}
