"""Each evaluated model's generations as their own cached asset (`core.generations`).

`teacher_generations`, `student_generations`, `baseline_generations` and `student_base_generations`
each depend on one model and the dataset; the evaluation report depends on them. Retraining the student
re-runs only `student_generations` (the others keep their data version), and a change of the metrics
re-scores in `evaluation_report` without generating anything.
"""

from collections.abc import Callable
from pathlib import Path

import dagster as dg

from summ_assets.core.artifacts import atomic_write_bytes, stable_json_hash
from summ_assets.core.generations import GENERATION_CODE, generate_cached, model_sets
from summ_assets.core.models import base_version
from summ_assets.defs.common import EVALUATION_GROUP, GPU_POOL, code_version, progress_logger
from summ_assets.defs.resources import ComputeResource, SummSettings

# evaluated model -> (the asset it comes from, its folder, its version)
MODELS: dict[str, tuple[str, Callable[[dict], str], Callable[[dict], str]]] = {
    "teacher": ("teacher_adapter", lambda m: m["merged"], lambda m: m["version"]),
    "student": ("student_model", lambda m: m["path"], lambda m: m["version"]),
    "baseline": ("student_baseline", lambda m: m["path"], lambda m: m["version"]),
    "student_base": ("student_trimmed_base", lambda m: m["path"], base_version),
}
DESCRIPTIONS = {
    "teacher": "the LoRA teacher (merged)",
    "student": "the distilled student",
    "baseline": "the CE-only student baseline",
    "student_base": "the untuned student base",
}


def store_root(settings: SummSettings) -> Path:
    """One store for every model: a folder per (model version, decoding settings)."""
    return settings.asset_dir("generation_store")


def _generations_asset(name: str) -> dg.AssetsDefinition:
    source, path_of, version_of = MODELS[name]

    @dg.asset(
        name=f"{name}_generations",
        group_name=EVALUATION_GROUP,
        pool=GPU_POOL,
        code_version=code_version(GENERATION_CODE, "eval", "data.max_prompt_tokens", prompt=True),
        kinds={"pytorch", "parquet"},
        ins={"model": dg.AssetIn(source)},
        description=f"Greedy summaries by {DESCRIPTIONS[name]} of val (all) and the test sets (the profile's "
        "fixed sample, or all with SUMM_EVAL_SCOPE=full); only rows the store lacks are generated.",
    )
    def _asset(
        context: dg.AssetExecutionContext,
        settings: SummSettings,
        compute: ComputeResource,
        summary_dataset: str,
        model: dict,
    ) -> dg.Output:
        import pyarrow as pa
        import pyarrow.parquet as pq

        profile = compute.configure(settings.get_profile(), log=context.log)
        ev = profile.eval
        if ev.test_sample is not None and name not in ev.sample_models:
            why = (
                f"not generated under SUMM_EVAL_SCOPE=sample (eval.sample_models = {list(ev.sample_models)})"
            )
            context.log.info(f"{name}: {why}; `make eval-full` generates it")
            return dg.Output(
                {"path": None, "model": name, "skipped": why},
                data_version=dg.DataVersion(f"skipped-{name}"),
                metadata={"skipped": why},
            )
        sets = model_sets(name, summary_dataset, ev)
        if "val" not in sets:
            context.log.info(
                f"{name}: val not generated under SUMM_EVAL_SCOPE=sample (eval.sample_val_models)"
            )
        got = generate_cached(
            path_of(model), version_of(model), sets, profile, store_root(settings), progress_logger(context)
        )
        version = stable_json_hash({"model": got["model"]["version"], "rows": got["rows"]})[:24]
        out = settings.asset_dir(f"{name}_generations") / f"{version}.parquet"
        if not out.exists():
            sink = pa.BufferOutputStream()
            pq.write_table(pa.Table.from_pylist(got["rows"]), sink, compression="zstd")
            atomic_write_bytes(out, sink.getvalue().to_pybytes())
        counts = {s: len(rows) for s, rows in sets.items()}
        return dg.Output(
            {
                "path": str(out),
                "model": name,
                "model_path": path_of(model),
                "version": got["model"]["version"],
                "parameters": got["model"]["parameters"],
                "bytes": got["model"]["bytes"],
                "speed": got["model"]["speed"],
                "prompts_cut": got["model"].get("prompts_cut", {}),
                "store": got["store"],
            },
            data_version=dg.DataVersion(version),
            metadata={
                "artifact": dg.MetadataValue.path(str(out)),
                "store": dg.MetadataValue.path(got["store"]),
                "generated": got["generated"],
                "reused_from_store": got["reused"],
                "dagster/row_count": len(got["rows"]),
                **{f"n_{s}": n for s, n in counts.items()},
                "forced_decode_tokens_per_s": float(got["model"]["speed"]["tokens_per_s"]),
                "parameters": int(got["model"]["parameters"]),
                **_degeneration_metadata(got["rows"]),
                **{
                    f"prompts_cut/{s}": float(c["share"])
                    for s, c in got["model"].get("prompts_cut", {}).items()
                },
            },
        )

    return _asset


def _degeneration_metadata(rows: list[dict]) -> dict[str, float]:
    """``degenerate/<set>/raw`` and ``degenerate/<set>/final``: shares of degenerate outputs."""
    from summ_assets.core.degeneration import shares

    out: dict[str, float] = {}
    for s in sorted({r["set"] for r in rows}):
        these = [r for r in rows if r["set"] == s]
        out[f"degenerate/{s}/raw"] = float(shares([r["raw"] for r in these])["degenerate"])
        out[f"degenerate/{s}/final"] = float(shares([r["prediction"] for r in these])["degenerate"])
    return out


teacher_generations = _generations_asset("teacher")
student_generations = _generations_asset("student")
baseline_generations = _generations_asset("baseline")
student_base_generations = _generations_asset("student_base")
GENERATION_ASSETS = [teacher_generations, student_generations, baseline_generations, student_base_generations]
