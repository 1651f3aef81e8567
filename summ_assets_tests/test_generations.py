"""The per-model generation store: only missing rows are generated; an edited section is regenerated;
another model version or other decoding settings get their own store."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from summ_assets.core import generation_store as GN
from summ_assets.core.profiles import TINY
from summ_assets_tests.helpers import tiny_models


def _rows(n: int, prefix: str = "s") -> list[dict]:
    return [
        {
            "section_id": f"{prefix}{i}",
            "doc_id": f"raw/d{i % 3}.md",
            "heading_path": f"H{i}",
            "text": f"섹션 {i}: 검색 단계는 질의를 임베딩하고 상위 문서를 고른다.",
            "summary": "요약.",
        }
        for i in range(n)
    ]


def test_the_store_generates_only_what_it_lacks(tmp_path: Path) -> None:
    _, s_dir = tiny_models()
    profile = replace(TINY, eval=replace(TINY.eval, max_new_tokens=4, speed_batch=2, speed_tokens=2))
    store = tmp_path / "store"
    val = _rows(4)
    first = GN.generate_cached(str(s_dir), "v1", {"val": val}, profile, store)
    assert (first["generated"], first["reused"]) == (4, 0)
    assert first["model"]["speed"]["tokens_per_s"] > 0 and first["model"]["parameters"] > 0
    speed = first["model"]["speed"]
    # decode-only (prefill apart) is faster than the whole call's rate, which includes the prefill
    assert speed["prefill_seconds"] > 0 and speed["end_to_end_tokens_per_s"] > 0
    assert (speed["batch"], speed["tokens"]) == (2, 2)

    tests = _rows(3, prefix="t")
    wider = GN.generate_cached(str(s_dir), "v1", {"val": val, "test_new": tests}, profile, store)
    assert (wider["generated"], wider["reused"]) == (3, 4)  # the val rows came from the store
    assert [r["prediction"] for r in wider["rows"][:4]] == [r["prediction"] for r in first["rows"]]
    assert [r["set"] for r in wider["rows"]] == ["val"] * 4 + ["test_new"] * 3

    edited = [dict(val[0], text=val[0]["text"] + " 새 문장."), *val[1:]]
    again = GN.generate_cached(str(s_dir), "v1", {"val": edited}, profile, store)
    assert (again["generated"], again["reused"]) == (1, 3)  # only the edited section

    other_model = GN.generate_cached(str(s_dir), "v2", {"val": val}, profile, store)
    assert other_model["generated"] == 4 and other_model["store"] != first["store"]
    longer = replace(profile, eval=replace(profile.eval, max_new_tokens=6))
    assert GN.generate_cached(str(s_dir), "v1", {"val": val}, longer, store)["generated"] == 4


def test_evaluation_rows_reads_val_in_full_and_samples_the_test_sets(tmp_path: Path) -> None:
    from summ_assets.core.dataset import write_splits

    by = {s: [] for s in ("train", "val", "test_seen", "test_similar", "test_new", "unlabelled")}
    for s in by:
        by[s] = [
            dict(r, part=1, label_source="l:1", split_key=f"{i:04d}") for i, r in enumerate(_rows(12, s))
        ]
    write_splits(tmp_path, by)
    sets, totals = GN.evaluation_rows(tmp_path, 5, with_totals=True)
    assert len(sets["val"]) == 12 and all(
        len(sets[s]) == 5 for s in ("test_seen", "test_similar", "test_new")
    )
    assert sets["test_new"] == GN.evaluation_rows(tmp_path, 5)["test_new"]  # a fixed sample
    assert totals["test_new"] == 12 and set(sets) == {"val", "test_seen", "test_similar", "test_new"}
    assert all(len(rows) == 12 for rows in GN.evaluation_rows(tmp_path, None).values())
    # the sample scope leaves val to the models the gates need (eval.sample_val_models); full has all
    ev = replace(TINY.eval, test_sample=5, sample_val_models=("student", "baseline"))
    assert "val" not in GN.model_sets("teacher", tmp_path, ev)
    assert set(GN.model_sets("student", tmp_path, ev)) == set(sets)
    assert set(GN.model_sets("teacher", tmp_path, replace(ev, test_sample=None))) == set(sets)


def test_serving_decodes_with_the_settings_saved_in_the_model_folder() -> None:
    """A model decodes as it was built and evaluated: generation_config.json wins over the profile in
    force; a plain Hugging Face folder (no summ_* fields) falls back to the profile."""
    import dataclasses

    from transformers import GenerationConfig

    from summ_assets.core.decoding import saved_decoding
    from summ_assets.core.profiles import TINY

    built_with = dataclasses.replace(
        TINY.eval, max_new_tokens=7, no_repeat_ngram_size=3, repetition_penalty=1.2, one_sentence=False
    )
    gen = GenerationConfig(
        max_new_tokens=built_with.max_new_tokens,
        repetition_penalty=built_with.repetition_penalty,
        summ_generated_no_repeat_ngram_size=built_with.no_repeat_ngram_size,
        summ_one_sentence=built_with.one_sentence,
    )
    now = TINY.eval  # the profile in force has other settings
    assert saved_decoding(gen, now) == {
        "max_new_tokens": 7,
        "no_repeat_ngram_size": 3,
        "repetition_penalty": 1.2,
        "one_sentence": False,
    }
    plain = saved_decoding(GenerationConfig(), now)
    assert plain["no_repeat_ngram_size"] == now.no_repeat_ngram_size
    assert plain["one_sentence"] == now.one_sentence
