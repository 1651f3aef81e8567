"""Corrupt or truncated artifacts are detected, named and rebuilt: a Parquet shard cut in half, a model
folder that lost or truncated its safetensors. Never a raw pyarrow/safetensors traceback, never a
half-read cache; a complete folder passes every check, so nothing is rebuilt needlessly."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from summ_assets.core import logits_cache as lc
from summ_assets.core.artifacts import cached_artifact
from summ_assets.core.integrity import (
    ArtifactError,
    artifact_asset,
    check_model_folder,
    check_parquet_files,
    check_safetensors_file,
)
from summ_assets_tests.helpers import cache_spec as _spec
from summ_assets_tests.helpers import (
    dataset_rows,
    tiny_cache_rows,
    tiny_models,
    tiny_tokenizer,
    write_dataset,
)


@pytest.fixture(scope="module")
def captured() -> list[dict]:
    """Teacher rows for 6 examples of the tiny teacher."""
    return tiny_cache_rows(6, batch_size=2)


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _two_shard_cache(folder: Path, rows: list[dict]) -> tuple[Path, Path]:
    a, b = folder / "part-a.parquet", folder / "part-b.parquet"
    lc.write_shard(rows[:3], a, _spec(), rows_per_group=1)  # several row groups per shard
    lc.write_shard(rows[3:], b, _spec(), rows_per_group=1)
    return a, b


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith((".old-", ".tmp-")))


# --- teacher-logit cache ------------------------------------------------------------------------------


def test_a_shard_cut_in_half_raises_cache_corrupt_error_naming_the_file(
    tmp_path: Path, captured: list[dict]
) -> None:
    cache = tmp_path / "artifacts" / "teacher_logits" / "v1"
    a, b = _two_shard_cache(cache, captured)
    assert set(lc.load(cache, _spec())) == {r["example_key"] for r in captured}
    _truncate(b)
    readers = {
        "load": lambda: lc.load(cache, _spec()),
        "load without spec": lambda: lc.load(cache),
        "cached_keys": lambda: lc.cached_keys(cache),
        "stats": lambda: lc.stats(cache),
        "read_metadata": lambda: lc.read_metadata(b),
        "shard_part_keys": lambda: lc.shard_part_keys(b),
    }
    for what, read in readers.items():
        with pytest.raises(lc.CacheCorruptError) as info:  # not a pyarrow exception type
            read()
        msg = str(info.value)
        assert str(b) in msg and "truncated or damaged" in msg, what
        assert "summ-assets refresh --force teacher_logits" in msg, what
        assert isinstance(info.value, lc.CacheMismatchError)  # callers that catch mismatches catch it too
    # the whole shard still reads on its own; a lost shard file is named the same way
    assert len(lc.shard_part_keys(a)) == 3
    b.unlink()
    with pytest.raises(lc.CacheCorruptError, match="the file is missing"):
        lc.read_metadata(b)
    # outside an artifacts root the fix is to score the folder again
    lone = tmp_path / "elsewhere"
    _, lone_b = _two_shard_cache(lone, captured)
    _truncate(lone_b, 0.9)
    with pytest.raises(lc.CacheCorruptError, match=f"delete {lone} and score the cache again"):
        lc.load(lone)


def test_verify_reports_the_damaged_file_and_passes_a_whole_cache(
    tmp_path: Path, captured: list[dict]
) -> None:
    keys = {r["example_key"] for r in captured}
    a, b = _two_shard_cache(tmp_path / "c", captured)
    assert lc.verify(tmp_path / "c") is None
    assert lc.verify(tmp_path / "c", keys) is None
    assert lc.shard_problem(a) is None
    _truncate(a)
    problem = lc.verify(tmp_path / "c")
    assert problem is not None and problem.startswith("part-a.parquet truncated or unreadable")
    assert lc.shard_problem(a) == problem
    a.unlink()  # a lost shard: only the expected keys tell
    assert lc.verify(tmp_path / "c") is None
    assert lc.verify(tmp_path / "c", keys) == (
        "3 example(s) in no shard (a shard file is missing): "
        + ", ".join(sorted(r["example_key"] for r in captured[:3]))
    )
    b.unlink()
    assert lc.verify(tmp_path / "c") == "no part-*.parquet shard file"
    assert lc.verify(tmp_path / "c", set()) is None  # an empty cache of no examples is whole
    assert lc.verify(tmp_path / "nope") == "folder missing"


def test_cached_artifact_rebuilds_a_cache_whose_shard_was_truncated(
    tmp_path: Path, captured: list[dict]
) -> None:
    target = tmp_path / "teacher_logits" / "v1"
    builds: list[Path] = []

    def build(tmp: Path) -> None:
        builds.append(tmp)
        _two_shard_cache(tmp, captured)

    logs: list[str] = []
    assert cached_artifact(target, build, log=logs.append, check=lc.verify) is True
    # a whole folder is reused: the check passes, nothing is built
    assert cached_artifact(target, build, log=logs.append, check=lc.verify) is False
    assert len(builds) == 1 and logs[-1].endswith("exists for these inputs; reusing it")
    _truncate(target / "part-b.parquet")
    logs.clear()
    assert cached_artifact(target, build, log=logs.append, check=lc.verify) is True
    assert len(builds) == 2
    assert logs[0].startswith(f"{target} is damaged (part-b.parquet truncated or unreadable")
    assert logs[0].endswith("; rebuilding") and logs[-1] == f"built {target}"
    assert set(lc.load(target, _spec())) == {r["example_key"] for r in captured}
    assert _leftovers(target.parent) == []
    # without a check the old behaviour stays: an existing folder is reused as it is
    _truncate(target / "part-a.parquet")
    assert cached_artifact(target, build) is False and len(builds) == 2


def test_merge_refuses_a_damaged_staged_shard(tmp_path: Path, captured: list[dict]) -> None:
    parts = lc.split_into_shards(captured, 2)
    for i, part in enumerate(parts):
        lc.write_shard_part(part, tmp_path / "st", i, 2, _spec())
    broken = lc.shard_part_path(tmp_path / "st", 1, 2)
    _truncate(broken)
    with pytest.raises(lc.ShardMergeError, match=f"shard 1/2: {broken} is damaged .*score shard 1 again"):
        lc.merge_shards(tmp_path / "st", tmp_path / "cache", _spec(), 2, {r["example_key"] for r in captured})
    assert not (tmp_path / "cache").exists()


def test_check_parquet_files_names_a_truncated_or_missing_file(tmp_path: Path, captured: list[dict]) -> None:
    a, b = _two_shard_cache(tmp_path, captured)
    assert check_parquet_files([a, b], tmp_path) is None
    _truncate(b, 0.97)  # only the footer's tail is gone
    assert check_parquet_files([a, b], tmp_path).startswith("part-b.parquet truncated or unreadable")
    assert check_parquet_files([tmp_path / "x.parquet"], tmp_path) == "x.parquet missing"


# --- model folders ----------------------------------------------------------------------------------------


@pytest.fixture
def student_folder(tmp_path: Path) -> Path:
    """A copy of the tiny student where an asset keeps it: <tmp>/artifacts/student_model/<key>."""
    _, s_dir = tiny_models()
    folder = tmp_path / "artifacts" / "student_model" / "0123abcd"
    shutil.copytree(s_dir, folder)
    return folder


def test_a_truncated_or_missing_safetensors_is_named(student_folder: Path) -> None:
    weights = student_folder / "model.safetensors"
    assert check_model_folder(student_folder) is None
    size = weights.stat().st_size
    _truncate(weights)
    assert check_model_folder(student_folder) == f"model.safetensors truncated ({size // 2} of {size} bytes)"
    weights.write_bytes(weights.read_bytes()[:4])
    assert (
        check_model_folder(student_folder) == "model.safetensors truncated (4 bytes: no safetensors header)"
    )
    weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    assert check_model_folder(student_folder).startswith("model.safetensors has an unreadable header")
    weights.unlink()
    assert check_model_folder(student_folder) == (
        "model.safetensors missing (no *.safetensors weights in the folder)"
    )
    (student_folder / "config.json").write_text("{")
    assert check_model_folder(student_folder).startswith("config.json unreadable")
    (student_folder / "config.json").unlink()
    assert check_model_folder(student_folder) == "config.json missing"
    assert check_model_folder(student_folder / "nope") == "folder missing"


def test_an_index_names_a_lost_weight_shard(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    (tmp_path / "config.json").write_text("{}")
    save_file({"a": torch.zeros(4)}, str(tmp_path / "model-00001-of-00002.safetensors"))
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    assert check_model_folder(tmp_path) == (
        "model-00002-of-00002.safetensors missing (listed in model.safetensors.index.json)"
    )
    save_file({"b": torch.ones(2, 2)}, str(tmp_path / "model-00002-of-00002.safetensors"))
    assert check_model_folder(tmp_path) is None
    assert check_safetensors_file(tmp_path / "model-00002-of-00002.safetensors") is None


def test_cached_artifact_rebuilds_a_model_folder_that_lost_its_weights(tmp_path: Path) -> None:
    _, s_dir = tiny_models()
    target = tmp_path / "artifacts" / "student_base" / "tiny-k"
    builds: list[int] = []

    def build(tmp: Path) -> None:
        builds.append(1)
        shutil.copytree(s_dir, tmp, dirs_exist_ok=True)

    logs: list[str] = []
    assert cached_artifact(target, build, log=logs.append, check=check_model_folder)
    assert not cached_artifact(target, build, log=logs.append, check=check_model_folder)
    assert len(builds) == 1
    (target / "model.safetensors").unlink()
    logs.clear()
    assert cached_artifact(target, build, log=logs.append, check=check_model_folder)
    assert (
        logs[0]
        == f"{target} is damaged (model.safetensors missing (no *.safetensors weights in the folder)); rebuilding"
    )
    _truncate(target / "model.safetensors", 0.9)
    assert cached_artifact(target, build, log=logs.append, check=check_model_folder)
    assert "model.safetensors truncated" in logs[-2] and len(builds) == 3
    assert check_model_folder(target) is None
    assert (target / "model.safetensors").read_bytes() == (s_dir / "model.safetensors").read_bytes()
    assert _leftovers(target.parent) == []


def test_load_causal_lm_names_the_folder_the_problem_and_the_fix(
    student_folder: Path, tmp_path: Path
) -> None:
    from summ_assets.core.models import load_causal_lm

    model = load_causal_lm(student_folder)  # a whole folder loads as before
    assert model.config.model_type == "gemma2"
    _truncate(student_folder / "model.safetensors")
    with pytest.raises(ArtifactError) as info:
        load_causal_lm(student_folder)
    msg = str(info.value)
    assert msg.startswith(f"model folder {student_folder} is damaged (model.safetensors truncated (")
    assert msg.endswith("re-materialize it: summ-assets refresh --force student_model")
    assert isinstance(info.value, RuntimeError)
    # a model folder outside an artifacts root: the user re-saves it
    mine = tmp_path / "my-model"
    shutil.copytree(student_folder, mine)
    (mine / "model.safetensors").unlink()
    with pytest.raises(
        ArtifactError, match="no \\*.safetensors weights in the folder\\)\\); re-save the model folder$"
    ):
        load_causal_lm(mine)


def test_the_asset_of_an_artifact_path() -> None:
    assert artifact_asset(Path("/x/artifacts/student_model/abc")) == "student_model"
    assert artifact_asset(Path("/x/artifacts/teacher_logits/v/part-a.parquet")) == "teacher_logits"
    assert artifact_asset(Path("/x/artifacts/student_model")) is None  # no key folder: not an artifact
    assert artifact_asset(Path("/x/models/student")) is None


# --- every asset's check passes a complete folder ------------------------------------------------------


def test_complete_folders_pass_every_check(tmp_path: Path, captured: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch
    from safetensors.torch import save_file

    from summ_assets.stages.evaluation import check_report_folder
    from summ_assets.stages.models import check_base_folder, check_pruned_folder
    from summ_assets.stages.seqkd import check_pseudo_folder
    from summ_assets.stages.student import check_student_folder
    from summ_assets.stages.teacher import check_teacher_adapter

    t_dir, s_dir = tiny_models()
    # student: model folder + training_metrics.json
    student = tmp_path / "student"
    shutil.copytree(s_dir, student)
    assert check_student_folder(student) == "training_metrics.json missing"
    (student / "training_metrics.json").write_text(json.dumps({"val_loss": 1.0}))
    assert check_student_folder(student) is None
    # base model: model folder + its version stamp (+ pruning.json when pruned)
    base = tmp_path / "base"
    shutil.copytree(s_dir, base)
    assert check_base_folder(base) == ".summ_version missing"
    (base / ".summ_version").write_text("abc\n")
    assert check_base_folder(base) is None
    assert check_pruned_folder(base) == "pruning.json missing"
    (base / "pruning.json").write_text(json.dumps({"kept_layers": [0]}))
    assert check_pruned_folder(base) is None
    # teacher adapter: adapter/adapter_model.safetensors, merged/ model folder, metrics.json
    adapter = tmp_path / "adapter"
    (adapter / "adapter").mkdir(parents=True)
    save_file({"lora_A": torch.zeros(2, 4)}, str(adapter / "adapter" / "adapter_model.safetensors"))
    shutil.copytree(t_dir, adapter / "merged")
    (adapter / "metrics.json").write_text(json.dumps({"val_loss": 1.0}))
    assert check_teacher_adapter(adapter) is None
    _truncate(adapter / "merged" / "model.safetensors")
    assert check_teacher_adapter(adapter).startswith("merged/model.safetensors truncated")
    _truncate(adapter / "adapter" / "adapter_model.safetensors")
    assert check_teacher_adapter(adapter).startswith("adapter/adapter_model.safetensors truncated")
    # evaluation report: report.json parses, report.md, predictions.parquet
    report = tmp_path / "report"
    report.mkdir()
    (report / "report.json").write_text(json.dumps({"tables": {}}))
    (report / "report.md").write_text("# report\n")
    pq.write_table(pa.Table.from_pylist([{"id": "a", "pred": "x"}]), report / "predictions.parquet")
    assert check_report_folder(report) is None
    (report / "report.json").write_text('{"tables": {')
    assert check_report_folder(report).startswith("report.json unreadable")
    # seq-KD: stats.json; rows.parquet and cache/ when it counted examples
    pseudo = tmp_path / "pseudo"
    pseudo.mkdir()
    (pseudo / "stats.json").write_text(json.dumps({"n": 0}))
    assert check_pseudo_folder(pseudo) is None
    (pseudo / "stats.json").write_text(json.dumps({"n": len(captured)}))
    assert check_pseudo_folder(pseudo) == "rows.parquet missing"
    pq.write_table(pa.Table.from_pylist([{"section_id": "s"}]), pseudo / "rows.parquet")
    assert check_pseudo_folder(pseudo) == "cache/folder missing"
    lc.write_shard(captured, pseudo / "cache" / "part-pseudo.parquet", _spec())
    assert check_pseudo_folder(pseudo) is None
    _truncate(pseudo / "cache" / "part-pseudo.parquet")
    assert check_pseudo_folder(pseudo).startswith("cache/part-pseudo.parquet truncated or unreadable")


# --- teacher_logits_stage ----------------------------------------------------------------------------------


def _stage_setup(tmp_path: Path) -> tuple:
    from summ_assets.core.profiles import TINY

    t_dir, _ = tiny_models()
    dataset = write_dataset(tmp_path / "dataset", n=6)
    adapter = {"path": str(t_dir), "merged": str(t_dir), "adapter": str(t_dir), "version": "stub-teacher"}
    profile = replace(TINY, threads=1, cache=replace(TINY.cache, batch_size=1))
    return profile, adapter, dataset


def _split_into_two_shards(cache: Path, spec: lc.CacheSpec) -> Path:
    """Rewrite a one-shard cache folder as two shards; returns the second (2 of the examples)."""
    rows = sorted(lc.load(cache).values(), key=lambda r: r["example_key"])
    for p in lc.shard_files(cache):
        p.unlink()
    lc.write_shard(rows[:-2], cache / "part-first.parquet", spec)
    lc.write_shard(rows[-2:], cache / "part-second.parquet", spec)
    return cache / "part-second.parquet"


def test_stage_skips_a_damaged_previous_shard_and_rebuilds_a_damaged_cache(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from summ_assets.stages.teacher import cache_spec, teacher_logits_stage

    profile, adapter, dataset = _stage_setup(tmp_path)
    spec = cache_spec(profile, adapter, AutoTokenizer.from_pretrained(adapter["merged"]))
    first = teacher_logits_stage(profile, tmp_path / "one", adapter, dataset)
    assert first is not None
    want = lc.load(Path(first.value["path"]))
    assert len(want) == 6

    # a previous version (another folder) with a shard cut in half: its examples are scored again
    prev = tmp_path / "prev" / "v0"
    shutil.copytree(first.value["path"], prev)
    broken = _split_into_two_shards(prev, spec)
    _truncate(broken)
    logs: list[str] = []
    out = teacher_logits_stage(
        profile, tmp_path / "two", adapter, dataset, prev_dir=str(prev), log=logs.append
    )
    assert out is not None and out.data_version == first.data_version
    assert any(
        m.startswith(f"previous cache: {broken} is damaged (part-second.parquet truncated") for m in logs
    )
    assert out.metadata["scored_examples"]["raw_value"] == 2
    assert out.metadata["reused_examples"]["raw_value"] == 4
    assert lc.load(Path(out.value["path"]), spec) == want

    # the current version itself damaged (a forced re-run: prev_dir is the same folder): rebuilt,
    # its whole shard reused from where it was moved aside, the damaged one scored again
    target = Path(out.value["path"])
    broken = _split_into_two_shards(target, spec)
    _truncate(broken)
    logs.clear()
    again = teacher_logits_stage(
        profile, tmp_path / "two", adapter, dataset, prev_dir=str(target), log=logs.append
    )
    assert again is not None and again.value["path"] == str(target)
    assert any(m.startswith(f"{target} is damaged (part-second.parquet truncated") for m in logs)
    assert again.metadata["scored_examples"]["raw_value"] == 2
    assert again.metadata["reused_examples"]["raw_value"] == 4
    assert lc.verify(target) is None and lc.load(target, spec) == want
    assert _leftovers(target.parent) == []

    # a whole cache is reused as it is: nothing scored
    logs.clear()
    same = teacher_logits_stage(
        profile, tmp_path / "two", adapter, dataset, prev_dir=str(target), log=logs.append
    )
    assert same is not None and not any(" is damaged" in m for m in logs), logs
    assert same.metadata["scored_examples"]["raw_value"] == 0
    assert lc.load(target, spec) == want


def test_seqkd_reader_names_a_damaged_rows_file(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from summ_assets.core.profiles import TINY
    from summ_assets.stages.seqkd import pseudo_examples

    folder = tmp_path / "artifacts" / "teacher_pseudo_summaries" / "k1"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(dataset_rows(3)), folder / "rows.parquet")
    _truncate(folder / "rows.parquet")
    with pytest.raises(
        ArtifactError,
        match="rows.parquet truncated or unreadable .*refresh --force teacher_pseudo_summaries$",
    ):
        pseudo_examples({"path": str(folder), "n": 3}, tiny_tokenizer(), TINY, _spec())


def test_leftovers_of_a_killed_write_are_swept_and_a_live_writers_are_kept(tmp_path: Path) -> None:
    """A write killed half-way leaves `.tmp-<name>-<pid>-*` (and maybe `.old-<name>-<pid>`); the next
    write of that artifact removes them, unless their writer is still alive."""
    import subprocess
    import sys

    from summ_assets.core.artifacts import atomic_dir

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    target = tmp_path / "abc123"
    (tmp_path / f".tmp-abc123-{dead_pid}-x1y2").mkdir()
    (tmp_path / f".old-abc123-{dead_pid}").mkdir()
    live = tmp_path / f".tmp-abc123-{os.getpid()}-live"
    live.mkdir()
    other = tmp_path / f".tmp-other-{dead_pid}-zz"
    other.mkdir()
    with atomic_dir(target) as tmp:
        (tmp / "done.txt").write_text("ok")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["abc123", live.name, other.name])  # other artifacts' leftovers are theirs
