"""One model's generations on the evaluation sets, cached per model version and decoding settings.

A store folder holds everything one (model version, decoding settings, prompt version) has generated:
Parquet shards of ``{row_key, section_id, prediction, raw, new_tokens}`` (``raw`` = the decoded
generation; the rows returned carry its `final_summary`, computed on read) plus ``model.json``
(parameters and forced-length decode speed). A row is keyed by its section id and a hash of its text,
so an edited section is generated again and nothing else is. Each call generates only the rows the
store lacks and writes them as one new shard, atomically; so retraining a student never regenerates
the teacher's outputs, widening the scope (``make eval-full``) generates only the new rows, and a
metrics change re-scores without generating.

Which rows: `evaluation_rows` — val in full (the gates' set) and, per test set, the first
``test_sample`` rows by split key (a fixed sample, the same for every model; None = all).
"""

from __future__ import annotations

import gc
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from summ_assets.core.artifacts import atomic_write_bytes, stable_json_hash, write_json
from summ_assets.core.dataset import SplitRow, read_split
from summ_assets.core.decoding import decoding_options
from summ_assets.core.prompts import prompt_messages, prompt_version, truncated_share
from summ_assets.core.sentence_cut import final_summary
from summ_assets.core.splits import EVAL_SETS, TEST_SETS

GENERATION_CODE = "generations-v2"  # v2: raw generation stored beside the final summary


def evaluation_rows(
    summary_dataset: str | Path, test_sample: int | None, *, with_totals: bool = False
) -> Any:
    """{set: rows} scored by the report: val in full, each test set's first `test_sample` rows (and,
    with `with_totals`, {set: rows in the whole split}). The one reader of the test splits."""
    out: dict[str, list[SplitRow]] = {}
    totals: dict[str, int] = {}
    for s in EVAL_SETS:
        rows = read_split(summary_dataset, s)
        totals[s] = len(rows)
        if s in TEST_SETS and test_sample is not None:
            rows = rows[:test_sample]
        out[s] = rows
    return (out, totals) if with_totals else out


def row_key(row: SplitRow) -> str:
    return f"{row['section_id']}:{hashlib.sha256(row['text'].encode()).hexdigest()[:16]}"


def decoding_settings(profile: Any) -> dict[str, Any]:
    """Everything that decides what a model generates for a section (batch size excepted: padding is
    masked; it changes float rounding only)."""
    return {
        "max_prompt_tokens": profile.data.max_prompt_tokens,
        "max_new_tokens": profile.eval.max_new_tokens,
        "do_sample": profile.eval.do_sample,
        "seed": profile.eval.seed,
        # the one-sentence cut is applied on read (`read_generations`), so toggling it re-scores only
        **{k: v for k, v in decoding_options(profile.eval).items() if k != "one_sentence"},
        "prompt": prompt_version(),
        "code": GENERATION_CODE,
    }


def store_key(model_version: str, decoding: dict[str, Any]) -> str:
    return stable_json_hash({"model": model_version, "decoding": decoding})[:20]


def read_store(folder: Path) -> dict[str, dict[str, Any]]:
    """row_key -> stored row, over every shard of the store (later shards win)."""
    import pyarrow.parquet as pq

    rows: dict[str, dict[str, Any]] = {}
    for shard in sorted(Path(folder).glob("part-*.parquet")):
        for r in pq.read_table(shard).to_pylist():
            rows[r["row_key"]] = r
    return rows


def model_sets(name: str, summary_dataset: str | Path, ev: Any) -> dict[str, list[SplitRow]]:
    """The sets model `name` generates: `evaluation_rows`, less val under the sample scope for a model
    outside ``eval.sample_val_models`` (the gates need only the student and the baseline on val)."""
    sets = evaluation_rows(summary_dataset, ev.test_sample)
    if ev.test_sample is not None and name not in ev.sample_val_models:
        sets.pop("val", None)
    return sets


def forced_decode_speed(model: Any, tokenizer: Any, texts: list[str], profile: Any) -> dict[str, float]:
    """Decode speed on a fixed batch with a forced length (min = max new tokens), so the figure does
    not depend on when a model stops: ``speed_batch`` prompts x ``speed_tokens`` tokens, after one
    warm-up step.

    ``tokens_per_s`` is decode only: the (tokens - 1) steps after the first, timed as a forced-length run
    minus a one-token run on the same batch, so the prompt's prefill (the same for every model of a
    depth, and dominated by long prompts) is apart: ``prefill_seconds``. ``end_to_end_tokens_per_s``
    counts all tokens over the whole call, prefill included."""
    import torch

    ev = profile.eval
    batch = (texts * ev.speed_batch)[: ev.speed_batch]
    convs = [prompt_messages(t, tokenizer, profile.data.max_prompt_tokens) for t in batch]
    old = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        enc = tokenizer.apply_chat_template(
            convs, add_generation_prompt=True, return_tensors="pt", return_dict=True, padding=True
        ).to(next(model.parameters()).device)
    finally:
        tokenizer.padding_side = old
    kw = {"do_sample": False, "pad_token_id": tokenizer.pad_token_id}

    def timed(n: int) -> float:
        t0 = time.perf_counter()
        model.generate(**enc, max_new_tokens=n, min_new_tokens=n, **kw)
        return time.perf_counter() - t0

    with torch.no_grad():
        timed(1)  # warm-up
        first = timed(1)
        dt = timed(ev.speed_tokens)
    rows, n = len(batch), ev.speed_tokens
    decode = (dt - first) if n > 1 and dt > first else 0.0
    return {
        "tokens_per_s": rows * (n - 1) / decode if decode else rows * n / dt,
        "end_to_end_tokens_per_s": rows * n / dt,
        "prefill_seconds": first,
        "batch": rows,
        "tokens": n,
        "seconds": dt,
    }


def generate_cached(
    model_path: str,
    model_version: str,
    sets: dict[str, list[SplitRow]],
    profile: Any,
    store_root: Path,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Generations for every row of `sets` from the model at `model_path`, generating only what the
    store lacks. Returns {"store", "rows": [{set, section_id, doc_id, prediction, raw, new_tokens}], "generated",
    "reused", "model": model.json content}."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from summ_assets.core.decoding import summarize_texts
    from summ_assets.core.lm import set_threads
    from summ_assets.core.models import count_parameters, load_causal_lm, resolve_device

    decoding = decoding_settings(profile)
    folder = Path(store_root) / store_key(model_version, decoding)
    folder.mkdir(parents=True, exist_ok=True)
    stored = read_store(folder)
    wanted = {row_key(r): r for rows in sets.values() for r in rows}
    missing = [k for k in wanted if k not in stored]
    info_file = folder / "model.json"
    info = json.loads(info_file.read_text()) if info_file.exists() else None
    if missing or info is None:
        from transformers import AutoTokenizer

        set_threads(profile.threads)
        tok = AutoTokenizer.from_pretrained(model_path)
        model = load_causal_lm(model_path, profile.dtype, resolve_device(profile.device), profile.max_memory)
        if missing:
            outs, st = summarize_texts(
                model,
                tok,
                [wanted[k]["text"] for k in missing],
                max_prompt_tokens=decoding["max_prompt_tokens"],
                max_new_tokens=decoding["max_new_tokens"],
                batch_size=profile.eval.batch_size,
                do_sample=decoding["do_sample"],
                progress=progress,
                **decoding_options(profile.eval),
            )
            new = [
                {
                    "row_key": k,
                    "section_id": wanted[k]["section_id"],
                    "prediction": o,
                    "raw": r,
                    "new_tokens": n,
                }
                for k, o, r, n in zip(missing, outs, st["raw"], st["row_tokens"], strict=True)
            ]
            sink = pa.BufferOutputStream()
            pq.write_table(pa.Table.from_pylist(new), sink, compression="zstd")
            shard = folder / f"part-{stable_json_hash(missing)[:16]}.parquet"
            atomic_write_bytes(shard, sink.getvalue().to_pybytes())
            stored.update({r["row_key"]: r for r in new})
            if progress:
                progress(
                    f"{len(missing)} generated ({st['seconds']:.0f} s), {len(wanted) - len(missing)} reused"
                )
        speed_texts = [r["text"] for rows in sets.values() for r in rows][: profile.eval.speed_batch]
        info = {
            "path": model_path,
            "version": model_version,
            "parameters": count_parameters(model),
            "bytes": sum(p.stat().st_size for p in Path(model_path).glob("*.safetensors")),
            "speed": forced_decode_speed(model, tok, speed_texts or ["."], profile),
            "decoding": decoding,
            "prompts_cut": {
                s: truncated_share([r["text"] for r in rows], tok, profile.data.max_prompt_tokens)
                for s, rows in sets.items()
            },
        }
        write_json(info_file, info)
        del model
        gc.collect()
    out_rows = [
        {
            "set": s,
            "section_id": r["section_id"],
            "doc_id": r["doc_id"],
            # the cut is applied on read: a change of it re-scores without generating
            "prediction": final_summary(stored[row_key(r)]["raw"], profile.eval.one_sentence),
            "raw": stored[row_key(r)]["raw"],
            "new_tokens": int(stored[row_key(r)]["new_tokens"]),
        }
        for s, rows in sets.items()
        for r in rows
    ]
    return {
        "store": str(folder),
        "rows": out_rows,
        "generated": len(missing),
        "reused": len(wanted) - len(missing),
        "model": info,
    }
