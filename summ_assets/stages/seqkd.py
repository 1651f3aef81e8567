"""Sequence-level KD stage bodies: the teacher summarizes the unlabelled sections and scores its own
summaries; the student reads them back as extra training examples (no dagster import here)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from summ_assets.core import logits_cache as lc
from summ_assets.core.artifacts import cached_artifact, write_json
from summ_assets.core.dataset import SplitRow, read_split
from summ_assets.core.decoding import decoding_options, summarize_texts
from summ_assets.core.examples import build_examples
from summ_assets.core.integrity import ArtifactError, check_json, check_parquet_files, rebuild_hint, within
from summ_assets.core.kd import attach_teacher
from summ_assets.core.lm import set_threads
from summ_assets.core.models import load_causal_lm, resolve_device
from summ_assets.core.profiles import Profile
from summ_assets.core.records import PseudoSummariesRef, TeacherAdapterRef
from summ_assets.core.spec import ProfileView
from summ_assets.core.splits import is_eval_document
from summ_assets.stages.base import Progress, StageResult, meta
from summ_assets.stages.specs import TEACHER_PSEUDO_SUMMARIES
from summ_assets.stages.teacher import cache_spec

log = logging.getLogger(__name__)


def pseudo_rows_for(summary_dataset: str, cap: int | None) -> list[SplitRow]:
    """The unlabelled sections that seq-KD uses (cap None = all, 0 = seq-KD off): those of training
    documents only. An unlabelled section of a test document (``data/eval/``) never becomes training
    data, and the filter comes before the cap, so the cap counts training sections."""
    rows = [r for r in read_split(summary_dataset, "unlabelled") if not is_eval_document(r["doc_id"])]
    return rows if cap is None else rows[:cap]


def check_pseudo_folder(folder: Path) -> str | None:
    """None when a `teacher_pseudo_summaries` folder is whole: stats.json parses; rows.parquet and
    the cache/ shards read (when present, and they must be when stats.json counts examples)."""
    folder = Path(folder)
    if problem := check_json(folder / "stats.json", folder):
        return problem
    stats = json.loads((folder / "stats.json").read_text(encoding="utf-8"))
    n = stats.get("n", 0) if isinstance(stats, dict) else 0
    rows = folder / "rows.parquet"
    if rows.exists() or n:
        if problem := check_parquet_files([rows], folder):
            return problem
    cache = folder / "cache"
    if cache.exists() or n:
        return within("cache", lc.verify(cache))
    return None


def summarize_and_score(
    rows: list[SplitRow],
    teacher_adapter: TeacherAdapterRef,
    profile: Profile | ProfileView,
    out: Path,
    progress: Progress | None,
) -> dict[str, Any]:
    """Greedy teacher summaries of `rows` (``out/rows.parquet``) and the teacher's sparse log-probs on
    them (``out/cache/``, same spec as `teacher_logits`); returns counts and timings."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    stats: dict = {"n": 0, "empty": 0, "generate_seconds": 0.0, "score_seconds": 0.0, "spec": None}
    if not rows:
        return stats
    from transformers import AutoTokenizer

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
        **decoding_options(profile.eval),
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


def pseudo_examples(
    pseudo: PseudoSummariesRef, tok: Any, profile: Profile | ProfileView, spec: lc.CacheSpec, kept: Any = None
) -> list[dict]:
    """The seq-KD examples of a `teacher_pseudo_summaries` output, joined with their cached teacher rows.
    With `kept` (a trimmed student's `core.vocab.KeptVocab`; `tok` is then the full tokenizer), they come
    in student ids, leaving out the few teacher summaries that use a token the student does not keep."""
    if not pseudo.get("n"):
        return []
    import pyarrow.parquet as pq

    dp = profile.data
    rows_file = Path(pseudo["path"]) / "rows.parquet"
    if problem := check_parquet_files([rows_file], Path(pseudo["path"])):
        raise ArtifactError(
            f"seq-KD folder {pseudo['path']} is damaged ({problem}); "
            + rebuild_hint(rows_file, "re-materialize teacher_pseudo_summaries")
        )
    rows = pq.read_table(rows_file).to_pylist()
    examples = build_examples(rows, tok, dp.max_prompt_tokens, dp.max_summary_tokens)
    cache = lc.load(Path(pseudo["path"]) / "cache", spec, {e["example_key"] for e in examples})
    if kept is not None:
        from summ_assets.core.vocab import in_student_ids, map_cache

        examples, left_out = in_student_ids(examples, kept)
        if left_out:
            log.info("seq-KD: %d teacher summaries use tokens the trimmed student lacks: left out", left_out)
        cache = map_cache(
            {e["example_key"]: cache[e["example_key"]] for e in examples if e["example_key"] in cache}, kept
        )
    return attach_teacher(examples, cache)


def pseudo_summaries_stage(
    profile: Profile | ProfileView,
    root: Path,
    summary_dataset: str,
    teacher_adapter: TeacherAdapterRef,
    progress: Progress | None = None,
    log: Progress | None = None,
) -> StageResult:
    """`teacher_pseudo_summaries`: the teacher's summaries of the unlabelled training-pool sections and
    its log-probs on them, in `root/<key>`; reused when the folder exists and is whole."""
    import pyarrow.parquet as pq

    profile = TEACHER_PSEUDO_SUMMARIES.view(profile)
    rows = pseudo_rows_for(summary_dataset, profile.student.seqkd_max_examples)
    key = TEACHER_PSEUDO_SUMMARIES.key(
        profile.profile,
        {"teacher": teacher_adapter["version"], "rows": [(r["section_id"], r["text"]) for r in rows]},
    )
    target = Path(root) / key

    def build(tmp: Path) -> None:
        write_json(tmp / "stats.json", summarize_and_score(rows, teacher_adapter, profile, tmp, progress))

    cached_artifact(target, build, log=log, check=check_pseudo_folder)
    stats = json.loads((target / "stats.json").read_text())
    rows_file = target / "rows.parquet"
    # (a column-less pyarrow table lists phantom {} rows: read only when seq-KD produced a file)
    sample = pq.read_table(rows_file).slice(0, 5).to_pylist() if rows_file.exists() else []
    preview = (
        "\n".join(f"- **{r['heading_path']}**: {r['summary']}" for r in sample) or "no unlabelled sections"
    )
    return StageResult(
        value={"path": str(target), "n": stats["n"], "version": key, "spec": stats.get("spec")},
        metadata={
            "artifact": meta(str(target), "path"),
            "examples": meta(int(stats["n"]), "int"),
            "empty_summaries": meta(int(stats["empty"]), "int"),
            "generate_seconds": meta(round(float(stats["generate_seconds"]), 1), "float"),
            "score_seconds": meta(round(float(stats["score_seconds"]), 1), "float"),
            "preview": meta(preview, "md"),
        },
        data_version=key,
    )
