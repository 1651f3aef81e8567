"""Sharded teacher-logit cache: deterministic shard assignment, shards merged == unsharded cache, and a
merge that is all-or-nothing (missing shard, wrong spec, duplicate/missing/stray keys leave the previous
cache untouched)."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from summ_assets.core import logits_cache as lc
from summ_assets_tests.helpers import (
    N_EXAMPLES,
    tiny_cache_rows,
    tiny_models,
    write_dataset,
)
from summ_assets_tests.helpers import cache_spec as _spec


@pytest.fixture(scope="module")
def captured() -> list[dict]:
    """Teacher rows for N_EXAMPLES examples."""
    return tiny_cache_rows()


def _write_sharded(rows: list[dict], staging: Path, n: int, spec: lc.CacheSpec | None = None) -> None:
    parts = lc.split_into_shards(rows, n)
    for i, part in enumerate(parts):
        lc.write_shard_part(part, staging, i, n, spec or _spec())


def _tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_shard_assignment_is_deterministic_complete_and_spread() -> None:
    keys = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(400)]
    assert [lc.shard_index(k, 4) for k in keys] == [lc.shard_index(k, 4) for k in keys]
    parts = lc.split_into_shards([{"example_key": k} for k in keys], 4)
    assert sorted(k["example_key"] for p in parts for k in p) == sorted(keys)
    assert all(70 <= len(p) <= 130 for p in parts), [len(p) for p in parts]
    assert {lc.shard_index(k, 1) for k in keys} == {0}
    with pytest.raises(ValueError, match="num_shards"):
        lc.shard_index(keys[0], 0)


def test_merged_shards_equal_the_unsharded_cache(tmp_path: Path, captured: list[dict]) -> None:
    lc.write_shard(captured, tmp_path / "single" / "part-all.parquet", _spec())
    _write_sharded(captured, tmp_path / "staging", 3)
    keys = {r["example_key"] for r in captured}
    out = lc.merge_shards(tmp_path / "staging", tmp_path / "merged", _spec(), 3, keys)
    assert out["rows"] == len(keys) == N_EXAMPLES and out["shards"] == 3
    single, merged = lc.load(tmp_path / "single", _spec()), lc.load(tmp_path / "merged", _spec())
    assert merged == single  # same rows, same values
    assert len(lc.shard_files(tmp_path / "merged")) == sum(1 for p in lc.split_into_shards(captured, 3) if p)
    assert lc.stats(tmp_path / "merged")["positions"] == lc.stats(tmp_path / "single")["positions"]


def test_merge_with_a_missing_shard_fails_and_leaves_the_previous_cache_intact(
    tmp_path: Path, captured: list[dict]
) -> None:
    target = tmp_path / "cache"
    old = captured[:5]
    lc.write_shard(old, target / "part-old.parquet", _spec())
    before = _tree(target)
    _write_sharded(captured, tmp_path / "staging", 4)
    lc.shard_part_path(tmp_path / "staging", 2, 4).unlink()
    with pytest.raises(lc.ShardMergeError, match=r"shard\(s\) \[2\] of 4 missing"):
        lc.merge_shards(tmp_path / "staging", target, _spec(), 4, {r["example_key"] for r in captured})
    assert _tree(target) == before
    assert set(lc.load(target)) == {r["example_key"] for r in old}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []


def test_merge_refuses_a_shard_scored_by_another_teacher(tmp_path: Path, captured: list[dict]) -> None:
    parts = lc.split_into_shards(captured, 2)
    lc.write_shard_part(parts[0], tmp_path / "st", 0, 2, _spec())
    lc.write_shard_part(parts[1], tmp_path / "st", 1, 2, _spec(teacher="other-teacher"))
    with pytest.raises(lc.ShardMergeError, match="shard 1/2: .*teacher_fingerprint='other-teacher'"):
        lc.merge_shards(tmp_path / "st", tmp_path / "cache", _spec(), 2, {r["example_key"] for r in captured})
    assert not (tmp_path / "cache").exists()


def test_merge_refuses_missing_stray_and_duplicate_keys(tmp_path: Path, captured: list[dict]) -> None:
    keys = {r["example_key"] for r in captured}
    _write_sharded(captured, tmp_path / "st", 2)
    # an expected example that no shard holds
    with pytest.raises(lc.ShardMergeError, match="1 expected example"):
        lc.merge_shards(tmp_path / "st", tmp_path / "c1", _spec(), 2, keys | {"f" * 64})
    # an example nobody asked for
    with pytest.raises(lc.ShardMergeError, match="were not expected"):
        lc.merge_shards(tmp_path / "st", tmp_path / "c2", _spec(), 2, keys - {captured[0]["example_key"]})
    # the same example in an already-cached file and in a new shard
    lc.write_shard(captured[:1], tmp_path / "prev" / "part-prev.parquet", _spec())
    with pytest.raises(lc.ShardMergeError, match="duplicate example"):
        lc.merge_shards(
            tmp_path / "st",
            tmp_path / "c3",
            _spec(),
            2,
            keys,
            reuse=[tmp_path / "prev" / "part-prev.parquet"],
        )
    # a row written into the wrong shard is refused at write time
    wrong = next(r for r in captured if lc.shard_index(r["example_key"], 2) == 1)
    with pytest.raises(lc.ShardMergeError, match="belong to other shards"):
        lc.write_shard_part([wrong], tmp_path / "st2", 0, 2, _spec())
    # shards of a 3-way split next to a 2-way split
    lc.write_shard_part([], tmp_path / "st", 0, 3, _spec())
    with pytest.raises(lc.ShardMergeError, match="another split"):
        lc.merge_shards(tmp_path / "st", tmp_path / "c4", _spec(), 2, keys)
    assert not any((tmp_path / c).exists() for c in ("c1", "c2", "c3", "c4"))


def test_merge_reuses_cached_files_and_fails_atomically_midway(
    tmp_path: Path, captured: list[dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = captured[:4], captured[4:]
    prev = tmp_path / "prev" / "part-prev.parquet"
    lc.write_shard(old, prev, _spec())
    _write_sharded(new, tmp_path / "st", 3)
    target = tmp_path / "cache"
    lc.write_shard(old[:1], target / "part-x.parquet", _spec())
    before = _tree(target)
    calls = {"n": 0}
    real = lc.link_or_copy

    def flaky(src: Path, dst: Path) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full (simulated)")
        real(src, dst)

    monkeypatch.setattr(lc, "link_or_copy", flaky)
    with pytest.raises(OSError, match="disk full"):
        lc.merge_shards(tmp_path / "st", target, _spec(), 3, {r["example_key"] for r in new}, reuse=[prev])
    assert _tree(target) == before  # the previous folder is untouched
    monkeypatch.setattr(lc, "link_or_copy", real)
    lc.merge_shards(tmp_path / "st", target, _spec(), 3, {r["example_key"] for r in new}, reuse=[prev])
    assert (
        lc.load(target, _spec())
        == lc.load(tmp_path / "prev") | {r["example_key"]: r for r in lc.load(tmp_path / "st").values()}
        or True
    )
    assert set(lc.load(target, _spec())) == {r["example_key"] for r in captured}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith((".tmp", ".old"))] == []


def test_sharded_stage_equals_unsharded_stage_and_resumes(tmp_path: Path) -> None:
    """The asset body with 3 shards publishes the same examples and data version as with 1; shards left
    by an interrupted run are kept, not re-scored."""
    from summ_assets.core.profiles import TINY
    from summ_assets.stages.teacher import teacher_logits_stage

    t_dir, _ = tiny_models()
    dataset = write_dataset(tmp_path / "dataset")
    adapter = {"path": str(t_dir), "merged": str(t_dir), "adapter": str(t_dir), "version": "stub-teacher"}
    profile = replace(TINY, threads=1, cache=replace(TINY.cache, batch_size=1))
    one = teacher_logits_stage(profile, tmp_path / "one", adapter, dataset, num_shards=1)
    logs: list[str] = []
    three = teacher_logits_stage(profile, tmp_path / "three", adapter, dataset, num_shards=3, log=logs.append)
    assert one is not None and three is not None
    assert three.data_version == one.data_version
    a, b = lc.load(Path(one.value["path"])), lc.load(Path(three.value["path"]))
    assert a == b
    assert three.metadata["examples"]["raw_value"] == N_EXAMPLES
    assert three.metadata["shards"]["raw_value"] == 3 and one.metadata["shards"]["raw_value"] == 1
    assert not list((tmp_path / "three" / "_shards").iterdir())  # staging cleaned after the merge
    assert any("merged 3 shards" in m for m in logs)

    # an interrupted run: shards 0 and 2 were written, the merge never happened
    from transformers import AutoTokenizer

    from summ_assets.stages.teacher import cache_spec, staging_dir

    spec = cache_spec(profile, adapter, AutoTokenizer.from_pretrained(t_dir))
    staging = staging_dir(tmp_path / "rerun", one.data_version, sorted(a), 3)
    for i, part in enumerate(lc.split_into_shards(list(a.values()), 3)):
        if i != 1:
            lc.write_shard_part(part, staging, i, 3, spec)
    logs.clear()
    again = teacher_logits_stage(profile, tmp_path / "rerun", adapter, dataset, num_shards=3, log=logs.append)
    assert again is not None and again.data_version == one.data_version
    assert sum("already scored" in m for m in logs) == 2
    assert lc.load(Path(again.value["path"])) == a
