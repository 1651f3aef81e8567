"""Sequence-level KD: the teacher summarizes the sections nobody labelled, and scores its own summaries.

New documents often arrive without reference summaries. Their sections still teach the student: the
teacher's greedy summary becomes the target (Kim & Rush, 2016) and the teacher's sparse log-probs on
it (same format and spec as `teacher_logits`) feed the token-level KD term. Only the distilled
student uses these examples; the CE baseline has no teacher and trains on the labelled data alone
(for the same number of optimizer steps, so the comparison is not a budget difference).
"""

import json
from pathlib import Path

import dagster as dg

from summ_assets.core.artifacts import atomic_dir, stable_json_hash, write_json
from summ_assets.defs.common import GPU_POOL, code_version, progress_logger
from summ_assets.defs.ingest import read_split
from summ_assets.defs.resources import ComputeResource, SummSettings

PSEUDO_CODE = "teacher-pseudo-summaries-v1"


def pseudo_rows_for(summary_dataset: str, cap: int | None) -> list[dict]:
    """The unlabelled sections that seq-KD uses (cap None = all, 0 = seq-KD off)."""
    rows = read_split(summary_dataset, "unlabelled")
    return rows if cap is None else rows[:cap]


@dg.asset(
    group_name="teacher",
    pool=GPU_POOL,
    code_version=code_version(PSEUDO_CODE, "student.seqkd_max_examples", "cache", "data", "eval.batch_size"),
    kinds={"pytorch", "parquet"},
    description="Sequence-level KD data: the teacher's greedy summaries of the unlabelled sections, with "
    "the teacher's sparse log-probs on them (same cache format as teacher_logits).",
)
def teacher_pseudo_summaries(
    context: dg.AssetExecutionContext,
    settings: SummSettings,
    compute: ComputeResource,
    summary_dataset: str,
    teacher_adapter: dict,
) -> dg.Output:
    import pyarrow.parquet as pq

    profile = compute.configure(settings.get_profile(), log=context.log)
    dp = profile.data
    rows = pseudo_rows_for(summary_dataset, profile.student.seqkd_max_examples)
    key = stable_json_hash(
        {
            "teacher": teacher_adapter["version"],
            "rows": [(r["section_id"], r["text"]) for r in rows],
            "data": [dp.max_prompt_tokens, dp.max_summary_tokens],
            "cache": [profile.cache.mode, profile.cache.k, profile.cache.n_samples],
            "code": PSEUDO_CODE,
        }
    )[:24]
    target = settings.asset_dir("teacher_pseudo_summaries") / key
    if not target.exists():
        with atomic_dir(target) as tmp:
            stats = summarize_and_score(rows, teacher_adapter, profile, tmp, progress_logger(context))
            write_json(tmp / "stats.json", stats)
    stats = json.loads((target / "stats.json").read_text())
    rows_file = target / "rows.parquet"
    # (a column-less pyarrow table lists phantom {} rows: read only when seq-KD produced a file)
    sample = pq.read_table(rows_file).slice(0, 5).to_pylist() if rows_file.exists() else []
    preview = (
        "\n".join(f"- **{r['heading_path']}**: {r['summary']}" for r in sample) or "no unlabelled sections"
    )
    return dg.Output(
        {
            "path": str(target),
            "n": stats["n"],
            "version": key,
            "spec": stats.get("spec"),
        },
        data_version=dg.DataVersion(key),
        metadata={
            "artifact": dg.MetadataValue.path(str(target)),
            "examples": int(stats["n"]),
            "empty_summaries": int(stats["empty"]),
            "generate_seconds": float(stats["generate_seconds"]),
            "score_seconds": float(stats["score_seconds"]),
            "preview": dg.MetadataValue.md(preview),
        },
    )


def summarize_and_score(rows: list[dict], teacher_adapter: dict, profile, out: Path, progress) -> dict:  # noqa: ANN001
    import time

    import pyarrow as pa
    import pyarrow.parquet as pq

    stats: dict = {"n": 0, "empty": 0, "generate_seconds": 0.0, "score_seconds": 0.0, "spec": None}
    if not rows:
        return stats
    from transformers import AutoTokenizer

    from summ_assets.core import logits_cache as lc
    from summ_assets.core.examples import build_examples
    from summ_assets.core.generation import summarize_texts
    from summ_assets.core.lm import set_threads
    from summ_assets.core.models import load_causal_lm, resolve_device
    from summ_assets.pipes.stages import cache_spec

    set_threads(profile.threads)
    dp = profile.data
    tok = AutoTokenizer.from_pretrained(teacher_adapter["merged"])
    teacher = load_causal_lm(
        teacher_adapter["merged"], profile.dtype, resolve_device(profile.device), profile.max_memory
    )
    t0 = time.time()
    preds, _ = summarize_texts(
        teacher,
        tok,
        [r["text"] for r in rows],
        max_prompt_tokens=dp.max_prompt_tokens,
        max_new_tokens=dp.max_summary_tokens,
        batch_size=profile.eval.batch_size,
        progress=progress,
    )
    t1 = time.time()
    source = f"teacher:{teacher_adapter['version']}"
    pseudo = [{**r, "summary": p, "label_source": source} for r, p in zip(rows, preds, strict=True)]
    pq.write_table(pa.Table.from_pylist(pseudo), out / "rows.parquet", compression="zstd")
    spec = cache_spec(profile, teacher_adapter, tok)
    examples = build_examples(pseudo, tok, dp.max_prompt_tokens, dp.max_summary_tokens)
    cache_rows = lc.capture(
        teacher, examples, spec, tok.pad_token_id, profile.cache.batch_size, profile.seed, progress=progress
    )
    lc.write_shard(cache_rows, out / "cache" / "part-pseudo.parquet", spec, profile.cache.rows_per_group)
    stats.update(
        n=len(pseudo),
        empty=sum(1 for p in preds if not p.strip()),
        generate_seconds=t1 - t0,
        score_seconds=time.time() - t1,
        spec=spec.metadata(),
    )
    return stats


def pseudo_examples(pseudo: dict, tok, profile, spec) -> list[dict]:  # noqa: ANN001
    """The seq-KD examples of a `teacher_pseudo_summaries` output, joined with their cached teacher rows."""
    if not pseudo.get("n"):
        return []
    import pyarrow.parquet as pq

    from summ_assets.core import logits_cache as lc
    from summ_assets.core.examples import build_examples
    from summ_assets.core.kd import attach_teacher

    dp = profile.data
    rows = pq.read_table(Path(pseudo["path"]) / "rows.parquet").to_pylist()
    examples = build_examples(rows, tok, dp.max_prompt_tokens, dp.max_summary_tokens)
    cache = lc.load(Path(pseudo["path"]) / "cache", spec, {e["example_key"] for e in examples})
    return attach_teacher(examples, cache)
