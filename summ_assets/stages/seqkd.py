"""Sequence-level KD stage bodies: the teacher summarizes the unlabelled sections and scores its own
summaries; the student reads them back as extra training examples (no dagster import here)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from summ_assets.core import logits_cache as lc
from summ_assets.core import pseudo_labels as PL
from summ_assets.core.artifacts import cached_artifact, stable_json_hash, write_json
from summ_assets.core.dataset import SplitRow, read_split
from summ_assets.core.decoding import decoding_options, summarize_texts
from summ_assets.core.examples import build_examples
from summ_assets.core.integrity import ArtifactError, check_json, check_parquet_files, rebuild_hint, within
from summ_assets.core.kd import attach_teacher
from summ_assets.core.lm import set_threads
from summ_assets.core.models import load_causal_lm, resolve_device
from summ_assets.core.profiles import Profile
from summ_assets.core.prompts import prompt_version
from summ_assets.core.records import PseudoSummariesRef, TeacherAdapterRef
from summ_assets.core.spec import ProfileView
from summ_assets.core.splits import is_eval_document
from summ_assets.stages.base import Progress, StageResult, meta, say
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


def _store_dir(root: Path, teacher_adapter: TeacherAdapterRef, profile: Profile | ProfileView) -> Path:
    """The label store of this teacher version and decoding (see `core.pseudo_labels`)."""
    settings = {
        "teacher": teacher_adapter["version"],
        "max_prompt_tokens": profile.data.max_prompt_tokens,
        "max_new_tokens": profile.data.max_summary_tokens,
        # the cut is applied when a label is made (what trains is the cut summary)
        **decoding_options(profile.eval),
        "prompt": prompt_version(),
        "code": PL.LABEL_CODE,
    }
    return Path(root) / "_labels" / stable_json_hash(settings)[:20]


class _Teacher:
    """The merged teacher and its tokenizer, loaded on first use (a run with nothing new loads nothing)."""

    def __init__(self, teacher_adapter: TeacherAdapterRef, profile: Profile | ProfileView) -> None:
        self.ref, self.profile, self._pair = teacher_adapter, profile, None

    def get(self) -> tuple[Any, Any]:
        if self._pair is None:
            from transformers import AutoTokenizer

            set_threads(self.profile.threads)
            tok = AutoTokenizer.from_pretrained(self.ref["merged"])
            model = load_causal_lm(
                self.ref["merged"],
                self.profile.dtype,
                resolve_device(self.profile.device),
                self.profile.max_memory,
            )
            self._pair = (model, tok)
        return self._pair


def label_sections(
    rows: list[SplitRow], teacher: _Teacher, profile: Profile | ProfileView, progress: Progress | None
) -> list[dict[str, Any]]:
    """The teacher's summary of each row, with its confidence (mean log-prob per summary token)."""
    from summ_assets.core.lm import completion_mean_logprobs

    if not rows:
        return []
    model, tok = teacher.get()
    dp = profile.data
    preds, info = summarize_texts(
        model,
        tok,
        [r["text"] for r in rows],
        max_prompt_tokens=dp.max_prompt_tokens,
        max_new_tokens=dp.max_summary_tokens,
        batch_size=profile.eval.batch_size,
        progress=progress,
        **decoding_options(profile.eval),
    )
    raws = info["raw"]
    examples = build_examples(
        [{**r, "summary": p} for r, p in zip(rows, preds, strict=True)],
        tok,
        dp.max_prompt_tokens,
        dp.max_summary_tokens,
    )
    conf = completion_mean_logprobs(model, examples, tok.pad_token_id, profile.cache.batch_size)
    return [
        PL.record(r, raw, p, c, len(e["input_ids"]) - e["completion_start"])
        for r, raw, p, c, e in zip(rows, raws, preds, conf, examples, strict=True)
    ]


def _finite(choice: dict[str, Any]) -> dict[str, Any]:
    """The filter choice for JSON: an unbounded threshold (keep every usable label) becomes None."""

    def fix(v: Any) -> Any:
        return None if isinstance(v, float) and v == float("-inf") else v

    out = {k: fix(v) for k, v in choice.items() if k != "candidates"}
    out["candidates"] = [{k: fix(v) for k, v in c.items()} for c in choice.get("candidates", [])]
    return out


def _threshold_text(value: float | None) -> str:
    return "none (every usable label)" if value is None else f"{value:.4f}"


def _val_choice(val_rows: list[SplitRow], labels: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The filter's threshold, chosen on val (`core.pseudo_labels.choose_threshold`)."""
    from summ_assets.core.metrics import rouge_scores

    recs = [labels[PL.row_key(r)] for r in val_rows]
    usable = [(rec, r) for rec, r in zip(recs, val_rows, strict=True) if PL.usable(rec)]
    if not usable:
        return {"threshold": float("-inf"), "kept_share": 1.0, "candidates": [], "val_labels": len(recs)}
    scores = rouge_scores([rec["summary"] for rec, _ in usable], [r["summary"] for _, r in usable])
    choice = PL.choose_threshold(
        [(rec["confidence"], sc["rougeLsum_f"]) for (rec, _), sc in zip(usable, scores, strict=True)]
    )
    return {**choice, "val_labels": len(recs), "val_usable": len(usable)}


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
    """`teacher_pseudo_summaries`: the teacher's labels of the unlabelled training-pool sections (cached
    per section content and teacher version: only sections the store lacks are labelled), filtered by
    a threshold chosen on val, with the teacher's log-probs on the kept ones; in `root/<key>`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    profile = TEACHER_PSEUDO_SUMMARIES.view(profile)
    rows = pseudo_rows_for(summary_dataset, profile.student.seqkd_max_examples)
    val_rows = read_split(summary_dataset, "val") if rows else []  # only to choose the threshold
    store = _store_dir(Path(root), teacher_adapter, profile)
    have = PL.read_store(store) if rows else {}
    todo = [r for r in [*rows, *val_rows] if PL.row_key(r) not in have]
    teacher = _Teacher(teacher_adapter, profile)
    t0 = time.time()
    fresh = label_sections(todo, teacher, profile, progress)
    label_seconds = time.time() - t0
    PL.write_shard(store, fresh)
    labels = {**have, **{r["row_key"]: r for r in fresh}}
    if rows:
        say(
            log,
            f"teacher labels: {len(fresh)} sections labelled now, {len(rows) + len(val_rows) - len(fresh)} reused",
        )
    choice = (
        _val_choice(val_rows, labels)
        if rows
        else {"threshold": float("-inf"), "kept_share": 1.0, "candidates": []}
    )
    reasons = {r["section_id"]: PL.keep(labels[PL.row_key(r)], choice["threshold"]) for r in rows}
    kept = [
        {**r, "summary": labels[PL.row_key(r)]["summary"]} for r in rows if reasons[r["section_id"]] is None
    ]
    source = f"teacher:{teacher_adapter['version']}"
    key = TEACHER_PSEUDO_SUMMARIES.key(
        profile.profile,
        {"teacher": teacher_adapter["version"], "kept": [PL.row_key(r) for r in kept], "store": store.name},
    )
    target = Path(root) / key
    dropped = {
        why: sum(1 for v in reasons.values() if v == why) for why in ("empty", "degenerate", "low_confidence")
    }

    def build(tmp: Path) -> None:
        spec = None
        score_seconds = 0.0
        if kept:
            model, tok = teacher.get()
            spec = cache_spec(profile, teacher_adapter, tok)
            examples = build_examples(
                [{**r, "label_source": source} for r in kept],
                tok,
                profile.data.max_prompt_tokens,
                profile.data.max_summary_tokens,
            )
            cache_dir = store / f"cache-{stable_json_hash(spec.metadata())[:12]}"
            have_logits = lc.cached_keys(cache_dir)  # read the store's shards once, not per example
            missing = [e for e in examples if e["example_key"] not in have_logits]
            t1 = time.time()
            if missing:
                cache_rows = lc.capture(
                    model,
                    missing,
                    spec,
                    tok.pad_token_id,
                    profile.cache.batch_size,
                    profile.seed,
                    progress=progress,
                )
                name = f"part-{stable_json_hash(sorted(e['example_key'] for e in missing))[:16]}.parquet"
                lc.write_shard(cache_rows, cache_dir / name, spec, profile.cache.rows_per_group)
            score_seconds = time.time() - t1
            for shard in lc.shard_files(cache_dir):
                lc.link_or_copy(shard, tmp / "cache" / shard.name)
            pq.write_table(
                pa.Table.from_pylist([{**r, "label_source": source} for r in kept]),
                tmp / "rows.parquet",
                compression="zstd",
            )
        # every candidate's label in the data/labels format: correct it, move it under data/labels, gold
        exported = PL.export_jsonl(
            [labels[PL.row_key(r)] for r in rows], tmp / "labels.jsonl", choice["threshold"], source
        )
        write_json(
            tmp / "stats.json",
            {
                "n": len(kept),
                "exported": exported,
                "candidates": len(rows),
                "empty": dropped["empty"],
                "dropped": dropped,
                "labelled_now": len(fresh),
                "label_seconds": label_seconds,
                "score_seconds": score_seconds,
                "filter": _finite(choice),
                "store": str(store),
                "spec": spec.metadata() if spec else None,
            },
        )

    cached_artifact(target, build, log=log, check=check_pseudo_folder)
    stats = json.loads((target / "stats.json").read_text())
    rows_file = target / "rows.parquet"
    # (a column-less pyarrow table lists phantom {} rows: read only when seq-KD produced a file)
    sample = pq.read_table(rows_file).slice(0, 5).to_pylist() if rows_file.exists() else []
    preview = (
        "\n".join(f"- **{r['heading_path']}**: {r['summary']}" for r in sample) or "no unlabelled sections"
    )
    filt = stats.get("filter") or {}
    table = "\n".join(
        [
            "| kept share | kept val labels | confidence threshold | val ROUGE-Lsum of kept |",
            "|---|---|---|---|",
        ]
        + [
            f"| {c['share']:.0%} | {c['kept']} | {_threshold_text(c['threshold'])} | {c['val_rouge_lsum']:.3f} |"
            for c in filt.get("candidates", [])
        ]
    )
    return StageResult(
        value={"path": str(target), "n": stats["n"], "version": key, "spec": stats.get("spec")},
        metadata={
            "artifact": meta(str(target), "path"),
            "examples": meta(int(stats["n"]), "int"),
            "candidate_sections": meta(int(stats.get("candidates", stats["n"])), "int"),
            "labelled_now": meta(int(len(fresh)), "int"),
            "empty_summaries": meta(int(stats["empty"]), "int"),
            "dropped_degenerate": meta(int(stats.get("dropped", {}).get("degenerate", 0)), "int"),
            "dropped_low_confidence": meta(int(stats.get("dropped", {}).get("low_confidence", 0)), "int"),
            "filter_threshold": meta(_threshold_text(filt.get("threshold")), "text"),
            "filter_kept_share_on_val": meta(float(filt.get("kept_share", 1.0)), "float"),
            "filter_chosen_on": meta(
                "val: teacher labels of the val sections scored against their gold summaries", "text"
            ),
            "filter_candidates": meta(table, "md"),
            "label_seconds": meta(round(float(label_seconds), 1), "float"),
            "score_seconds": meta(round(float(stats.get("score_seconds", 0.0)), 1), "float"),
            "labels_jsonl": meta(str(target / "labels.jsonl"), "path"),
            "preview": meta(preview, "md"),
        },
        data_version=key,
    )
