"""The `*_generations` stage: one evaluated model's greedy summaries of val and the test sets, through
the shared generation store (`summ_assets.core.generation_store`), as one Parquet file (no dagster import).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from summ_assets.core.artifacts import atomic_write_bytes, stable_json_hash
from summ_assets.core.generation_store import generate_cached, model_sets
from summ_assets.core.models import base_version
from summ_assets.core.profiles import Profile
from summ_assets.core.spec import AssetSpec, ProfileView
from summ_assets.stages.base import Progress, StageResult, meta, say
from summ_assets.stages.specs import GENERATIONS

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


def generations_stage(
    name: str,
    profile: Profile | ProfileView,
    root: Path,
    store: Path,
    summary_dataset: str,
    model: dict[str, Any],
    progress: Progress | None = None,
    log: Progress | None = None,
    spec: AssetSpec | None = None,
) -> StageResult:
    """`name`'s generations of its sets (`core.generation_store.model_sets`) in `root/<version>.parquet`;
    only rows `store` lacks are generated. A model the sample scope leaves out returns a 'skipped' record.
    `spec`: the asset whose settings apply (default `<name>_generations`; the full evaluation passes its own)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    spec = spec or GENERATIONS[name]
    profile = spec.view(profile)
    _, path_of, version_of = MODELS[name]
    ev = profile.eval
    if ev.test_sample is not None and name not in ev.sample_models:
        why = f"not in the sampled evaluation (eval.sample_models = {list(ev.sample_models)})"
        say(log, f"{name}: {why}; `make eval-full` generates it")
        return StageResult(
            value={"path": None, "model": name, "skipped": why},
            metadata={"skipped": meta(why, "text")},
            data_version=f"skipped-{name}",
        )
    sets = model_sets(name, summary_dataset, ev)
    if "val" not in sets:
        say(log, f"{name}: val not generated in the sampled evaluation (eval.sample_val_models)")
    got = generate_cached(path_of(model), version_of(model), sets, profile, Path(store), progress)
    version = stable_json_hash(
        {"spec": spec.code_version(profile.profile), "model": got["model"]["version"], "rows": got["rows"]}
    )[:24]
    out = Path(root) / f"{version}.parquet"
    if not out.exists():
        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pylist(got["rows"]), sink, compression="zstd")
        atomic_write_bytes(out, sink.getvalue().to_pybytes())
    counts = {s: len(rows) for s, rows in sets.items()}
    return StageResult(
        value={
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
        metadata={
            "artifact": meta(str(out), "path"),
            "store": meta(got["store"], "path"),
            "generated": meta(got["generated"], "int"),
            "reused_from_store": meta(got["reused"], "int"),
            "dagster/row_count": meta(len(got["rows"]), "int"),
            **{f"n_{s}": meta(n, "int") for s, n in counts.items()},
            "forced_decode_tokens_per_s": meta(
                round(float(got["model"]["speed"]["tokens_per_s"]), 1), "float"
            ),
            "parameters": meta(int(got["model"]["parameters"]), "int"),
            **{k: meta(v, "float") for k, v in _degeneration_metadata(got["rows"]).items()},
            **{
                f"prompts_cut/{s}": meta(round(float(c["share"]), 4), "float")
                for s, c in got["model"].get("prompts_cut", {}).items()
            },
        },
        data_version=version,
    )


def _degeneration_metadata(rows: list[dict]) -> dict[str, float]:
    """``degenerate/<set>/raw`` and ``degenerate/<set>/final``: shares of degenerate outputs."""
    from summ_assets.core.degeneration import shares

    out: dict[str, float] = {}
    for s in sorted({r["set"] for r in rows}):
        these = [r for r in rows if r["set"] == s]
        out[f"degenerate/{s}/raw"] = round(float(shares([r["raw"] for r in these])["degenerate"]), 4)
        out[f"degenerate/{s}/final"] = round(float(shares([r["prediction"] for r in these])["degenerate"]), 4)
    return out
