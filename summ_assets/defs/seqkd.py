"""Sequence-level KD: the teacher summarizes the sections nobody labelled, and scores its own summaries.

New documents often arrive without reference summaries. Their sections still teach the student: the
teacher's greedy summary becomes the target (Kim & Rush, 2016) and the teacher's sparse log-probs on
it (same format and spec as `teacher_logits`) feed the token-level KD term. Only the distilled
student uses these examples; the CE baseline has no teacher and trains on the labelled data alone
(for the same number of optimizer steps, so the comparison is not a budget difference).
"""

import json

import dagster as dg

from summ_assets.core.artifacts import cached_artifact, stable_json_hash, write_json
from summ_assets.defs.common import GPU_POOL, TEACHER_GROUP, code_version, progress_logger
from summ_assets.defs.resources import ComputeResource, SummSettings
from summ_assets.stages.seqkd import PSEUDO_CODE, check_pseudo_folder, pseudo_rows_for, summarize_and_score


@dg.asset(
    group_name=TEACHER_GROUP,
    pool=GPU_POOL,
    code_version=code_version(
        PSEUDO_CODE,
        "student.seqkd_max_examples",
        "student.temperature",
        "cache",
        "data",
        "eval.batch_size",
        prompt=True,
    ),
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

    def build(tmp) -> None:  # noqa: ANN001
        write_json(
            tmp / "stats.json",
            summarize_and_score(rows, teacher_adapter, profile, tmp, progress_logger(context)),
        )

    cached_artifact(target, build, log=context.log.info, check=check_pseudo_folder)
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
