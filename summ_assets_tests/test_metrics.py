"""Tests for summ_assets.core.metrics: Korean ROUGE, offline BERTScore, bootstrap, output stats."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from summ_assets.core import metrics as M

REF = "회의는 오후 세 시에 본관 대회의실에서 열립니다."
CAND = "회의는 세 시에 대회의실에서 열립니다."

CORPUS = [
    "회의는 오후 세 시에 본관 대회의실에서 열립니다.",
    "회의는 세 시에 대회의실에서 열립니다.",
    "박물관은 매주 월요일에 휴관합니다.",
    "RAG 시스템은 문서 로드와 청킹, 검색, 생성의 단계로 구성된다.",
    "연구팀은 작은 언어 모델로 요약 성능을 평가했습니다.",
    "The meeting starts at three in the main hall.",
    "Retrieval augmented generation combines search and generation.",
    "모델은 입력 문서를 한 문장으로 요약한다.",
    "지식 증류는 교사 모델의 분포를 학생 모델이 모방하도록 학습한다.",
    "평가 지표로 ROUGE와 BERTScore를 사용한다.",
]


@pytest.fixture(autouse=True)
def _offline_and_single_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import torch

    torch.set_num_threads(1)


# --------------------------------------------------------------------------------------------------
# ROUGE
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["kiwi", "whitespace", "char"])
def test_identical_korean_scores_one(kind: str) -> None:
    (row,) = M.rouge_scores([REF], [REF], tokenizer=kind)
    for rtype in M.ROUGE_TYPES:
        assert row[f"{rtype}_f"] == pytest.approx(1.0)
        assert row[f"{rtype}_p"] == pytest.approx(1.0)
        assert row[f"{rtype}_r"] == pytest.approx(1.0)


def test_default_tokenizer_drops_hangul_regression_guard() -> None:
    # rouge_score's tokenizer keeps only [a-z0-9]: identical Korean strings score 0. If this ever
    # changes, the "default" path is no longer the known-broken reference and must be re-checked.
    (row,) = M.rouge_scores([REF], [REF], tokenizer="default")
    assert all(row[f"{t}_f"] == 0.0 for t in M.ROUGE_TYPES)
    from rouge_score import rouge_scorer

    raw = rouge_scorer.RougeScorer(["rouge1"]).score(REF, REF)["rouge1"].fmeasure
    assert raw == 0.0


@pytest.mark.parametrize("kind", ["kiwi", "whitespace", "char"])
def test_disjoint_strings_score_zero(kind: str) -> None:
    (row,) = M.rouge_scores(["사과 바나나 포도"], ["컴퓨터 키보드 마우스"], tokenizer=kind)
    assert all(row[f"{t}_f"] == 0.0 for t in M.ROUGE_TYPES)


def test_default_path_equals_rouge_score_defaults_on_english() -> None:
    from rouge_score import rouge_scorer

    preds = [
        "The cat sat on the mat.",
        "A quick brown fox jumps over the lazy dog\nIt was fast.",
        "Revenue grew 12% in 2023, driven by cloud services.",
        "",
    ]
    refs = [
        "The cat was sitting on the mat.",
        "The quick brown fox jumped over a lazy dog.\nIt ran quickly.",
        "In 2023 revenue rose by 12 percent thanks to cloud services.",
        "Nothing here.",
    ]
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeLsum"])
    ours = M.rouge_scores(preds, refs, tokenizer="default")
    for pred, ref, row in zip(preds, refs, ours, strict=True):
        expected = scorer.score(ref, pred)
        for rtype in M.ROUGE_TYPES:
            assert row[f"{rtype}_p"] == expected[rtype].precision
            assert row[f"{rtype}_r"] == expected[rtype].recall
            assert row[f"{rtype}_f"] == expected[rtype].fmeasure
    assert ours[0]["rouge1_f"] > 0.5


def test_seed_example_kiwi_values() -> None:
    (kiwi,) = M.rouge_scores([CAND], [REF], tokenizer="kiwi")
    assert kiwi["rouge1_f"] == pytest.approx(0.909, abs=1e-3)
    assert kiwi["rouge1_p"] == pytest.approx(1.0)
    assert kiwi["rouge2_f"] == pytest.approx(0.700, abs=1e-3)
    assert kiwi["rougeLsum_f"] == pytest.approx(0.909, abs=1e-3)
    (ws,) = M.rouge_scores([CAND], [REF], tokenizer="whitespace")
    assert ws["rouge1_f"] == pytest.approx(0.833, abs=1e-3)
    assert ws["rouge2_f"] == pytest.approx(0.400, abs=1e-3)


def test_kiwi_tokenizer_drops_punctuation_keeps_latin_numbers() -> None:
    from rouge_score.tokenizers import Tokenizer

    tok = M.get_tokenizer("kiwi")
    assert isinstance(tok, Tokenizer)
    assert isinstance(tok, M.KiwiMorphTokenizer)
    assert tok.name == f"kiwi-{__import__('kiwipiepy').__version__}-morph-nopunct"
    tokens = tok.tokenize("RAG 시스템은 3단계(검색·생성)로 구성된다.")
    assert "rag" in tokens and "3" in tokens and "검색" in tokens
    assert not {".", "(", ")", "·"} & set(tokens)
    assert tok.tokenize("") == [] and tok.tokenize("   ") == []


def test_whitespace_and_char_tokenizers() -> None:
    assert M.WhitespaceTokenizer().tokenize("검색, 생성! RAG-시스템") == ["검색", "생성", "rag", "시스템"]
    assert M.CharTokenizer().tokenize("가 나A") == ["가", "나", "a"]
    names = {M.tokenizer_name(k) for k in M.TOKENIZER_KINDS}
    assert len(names) == 4


def test_split_sentences_korean() -> None:
    assert M.split_sentences("회의는 세 시에 열립니다. 모두 참석하세요! 감사합니다") == [
        "회의는 세 시에 열립니다.",
        "모두 참석하세요!",
        "감사합니다",
    ]
    assert M.split_sentences("첫 줄\n\n둘째 줄") == ["첫 줄", "둘째 줄"]
    assert M.split_sentences("  ") == []


def test_rouge_lsum_is_sentence_level_for_korean() -> None:
    ref = "회의는 세 시에 열립니다. 모두 대회의실로 오세요."
    cand = "모두 대회의실로 오세요. 회의는 세 시에 열립니다."  # same sentences, swapped order
    (row,) = M.rouge_scores([cand], [ref], tokenizer="kiwi")
    assert row["rouge1_f"] == pytest.approx(1.0)
    assert row["rougeLsum_f"] == pytest.approx(1.0)  # union-LCS per sentence
    assert row["rouge2_f"] < 1.0  # the bigram across the boundary differs
    # without sentence splitting the LCS over the whole text is clearly lower
    from rouge_score import rouge_scorer

    flat = rouge_scorer.RougeScorer(["rougeLsum"], tokenizer=M.get_tokenizer("kiwi")).score(ref, cand)
    assert flat["rougeLsum"].fmeasure < 0.75


def test_cached_analysis_gives_same_scores() -> None:
    first = M.rouge_scores([CAND, REF], [REF, CAND], tokenizer="kiwi")
    assert M.rouge_scores([CAND, REF], [REF, CAND], tokenizer="kiwi") == first
    M.clear_caches()
    assert M.rouge_scores([CAND, REF], [REF, CAND], tokenizer="kiwi") == first


def test_rouge_scores_validates_input() -> None:
    with pytest.raises(ValueError):
        M.rouge_scores(["a"], ["a", "b"])
    with pytest.raises(ValueError):
        M.rouge_scores(["a"], ["a"], tokenizer="mecab")


# --------------------------------------------------------------------------------------------------
# BERTScore on tiny local folders
# --------------------------------------------------------------------------------------------------


def _wordpiece(corpus: list[str]):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(
        corpus * 3, trainers.WordPieceTrainer(vocab_size=600, special_tokens=specials, show_progress=False)
    )
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return tok


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny_bert")
    fast = BertTokenizerFast(
        tokenizer_object=_wordpiece(CORPUS),
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    cfg = BertConfig(
        vocab_size=len(fast),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(cfg).save_pretrained(out)
    fast.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def gemma_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import Gemma2Config, Gemma2ForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny_gemma2")
    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.normalizer = normalizers.NFC()
    raw.pre_tokenizer = pre_tokenizers.Metaspace()
    specials = ["<pad>", "<eos>", "<bos>", "<unk>"]
    raw.train_from_iterator(
        CORPUS * 3, trainers.BpeTrainer(vocab_size=500, special_tokens=specials, show_progress=False)
    )
    raw.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", raw.token_to_id("<bos>"))]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )
    cfg = Gemma2Config(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=256,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
        attn_implementation="eager",
    )
    Gemma2ForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _check_scores(scores: dict[str, list[float]], n: int) -> None:
    assert set(scores) == {"P", "R", "F"}
    for key in ("P", "R", "F"):
        assert len(scores[key]) == n
        assert all(math.isfinite(v) and -1.0 - 1e-6 <= v <= 1.0 + 1e-6 for v in scores[key])


def test_bertscore_tiny_bert_offline(bert_dir: Path) -> None:
    scorer = M.BertScorer(bert_dir)
    assert scorer.num_layers == 1  # middle of 2 layers
    assert M.middle_layer(bert_dir) == 1
    assert scorer._scorer._tokenizer.model_max_length <= 512
    cands = [REF, CAND, "박물관은 매주 월요일에 휴관합니다."]
    refs = [REF, REF, REF]
    scores = scorer.score(cands, refs, batch_size=2)
    _check_scores(scores, 3)
    assert scores["F"][0] == pytest.approx(1.0, abs=1e-4)
    assert scores["P"][0] == pytest.approx(1.0, abs=1e-4)
    assert scores["F"][1] < scores["F"][0]
    h = scorer.hash
    assert h.startswith(f"{bert_dir.name}_L1_no-idf_version=") and h.endswith("_fast-tokenizer")
    assert scorer.score([], []) == {"P": [], "R": [], "F": []}
    with pytest.raises(ValueError):
        scorer.score(["a"], ["a", "b"])


def test_bertscore_explicit_layer_and_rescale(bert_dir: Path) -> None:
    scorer = M.BertScorer(bert_dir, num_layers=2, model_id="tiny-bert")
    assert scorer.hash.startswith("tiny-bert_L2_no-idf")
    b = scorer.baseline_from_random_pairs(CORPUS, n_pairs=20, seed=0)
    assert b == scorer.baseline_from_random_pairs(CORPUS, n_pairs=20, seed=0)
    assert all(-1.0 <= v < 1.0 for v in b)
    raw = scorer.score([CAND], [REF])
    rescaled = M.BertScorer(bert_dir, num_layers=2, model_id="tiny-bert", baseline=b)
    assert "-custom-rescaled" in rescaled.hash
    res = rescaled.score([CAND], [REF])
    for i, key in enumerate(("P", "R", "F")):
        assert res[key][0] == pytest.approx(M.rescale(raw[key][0], b[i]), abs=1e-6)
    assert M.rescale(0.8, 0.6) == pytest.approx(0.5)
    assert M.rescale(0.6, 0.6) == 0.0
    with pytest.raises(ValueError):
        scorer.baseline_from_random_pairs(["같은 문장", "같은 문장"], n_pairs=5)


def test_bertscore_tiny_gemma2_decoder_only(gemma_dir: Path) -> None:
    scorer = M.BertScorer(gemma_dir)
    assert scorer.num_layers == 1
    scores = scorer.score([REF, CAND, "전혀 다른 문장입니다."], [REF, REF, REF], batch_size=3)
    _check_scores(scores, 3)
    assert scores["F"][0] == pytest.approx(1.0, abs=1e-4)
    assert scores["F"][1] < 1.0


def test_middle_layer_reads_nested_text_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"text_config": {"num_hidden_layers": 26}}', encoding="utf-8")
    assert M.middle_layer(tmp_path) == 13
    with pytest.raises(FileNotFoundError):
        M.middle_layer(tmp_path / "missing")


# --------------------------------------------------------------------------------------------------
# Bootstrap and output stats
# --------------------------------------------------------------------------------------------------


def test_output_stats() -> None:
    stats = M.output_stats(["회의는 세 시입니다.", "  ", "회의는 세 시에 열립니다. 모두 참석하세요!", "abcd"])
    assert stats["n"] == 4
    assert stats["empty_share"] == pytest.approx(0.25)
    assert stats["multi_sentence_share"] == pytest.approx(0.25)
    expected_len = (len("회의는 세 시입니다.") + 0 + len("회의는 세 시에 열립니다. 모두 참석하세요!") + 4) / 4
    assert stats["mean_chars"] == pytest.approx(expected_len)
    assert M.output_stats([])["n"] == 0


# --------------------------------------------------------------------------------------------------
# Languages, group-aware baseline, BERTScore without empties
# --------------------------------------------------------------------------------------------------

# group = "language:doc_id"; the two English texts share one document, so no English pair is valid.
GROUPS = ["ko:a", "ko:a", "ko:b", "ko:c", "ko:d", "en:e", "en:e", "ko:g", "ko:h", "ko:i"]


def test_language_of() -> None:
    assert M.language_of(REF) == "ko"
    assert M.language_of("The meeting starts at three in the main hall.") == "other"
    assert M.language_of("RAG 시스템은 문서 로드와 청킹으로 구성된다.") == "ko"
    assert M.language_of("RAG 시스템") == "ko"  # 3 of 6 letters
    # an English sentence quoting one Korean word: 2 of 30 letters
    assert M.language_of("Retrieval augmented generation 검색") == "other"
    assert M.language_of("abcd가") == "ko"  # exactly 20 %
    assert M.language_of("abcde가") == "other"  # 1 of 6 < 20 %
    for text in ("", "   ", "123 !!", "ㅋㅋㅋ", "漢字"):  # no letters, jamo only, hanja only
        assert M.language_of(text) == "other"


def _record_raw(scorer: M.BertScorer, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Make `scorer._raw` record every (candidate, reference) pair it scores."""
    seen: list[tuple[str, str]] = []
    original = scorer._raw

    def recording(cands, refs, batch_size):
        seen.extend(zip(cands, refs, strict=True))
        return original(cands, refs, batch_size)

    monkeypatch.setattr(scorer, "_raw", recording)
    return seen


def test_baseline_from_pairs_only_cross_group_same_language(
    bert_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scorer = M.BertScorer(bert_dir)
    seen = _record_raw(scorer, monkeypatch)
    # a repeat of CORPUS[2] under another group and an empty text: both dropped
    texts = [*CORPUS, CORPUS[2], "   "]
    groups = [*GROUPS, "ko:zz", "ko:empty"]
    b = scorer.baseline_from_pairs(texts, groups, n_pairs=200, seed=0)
    assert len(seen) == 200
    group_of = dict(zip(CORPUS, GROUPS, strict=True))  # first occurrence wins
    for cand, ref in seen:
        assert cand.strip() and ref.strip()
        assert group_of[cand] != group_of[ref]
        assert group_of[cand].split(":")[0] == group_of[ref].split(":")[0] == "ko"
    # every Korean text takes part; English ones never do (their only partner is in the same group)
    korean = {t for t, g in group_of.items() if g.startswith("ko:")}
    assert {c for c, _ in seen} == korean
    assert all(-1.0 <= v < 1.0 for v in b)
    assert b[2] < 0.99  # the self-score is 1: no pair of a text with itself or a copy


def test_baseline_from_pairs_value_deterministic_and_errors(
    bert_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scorer = M.BertScorer(bert_dir)
    k1, k2, e1, e2 = CORPUS[2], CORPUS[4], CORPUS[5], CORPUS[6]
    # After dropping the repeat of k1 (under another group), only (k1, k2) and (k2, k1) are valid: e1
    # and e2 are one English document. F is symmetric, so the baseline F equals F(k1, k2) exactly; a
    # pair of k1 with its repeat (F = 1) or an English pair would move it.
    groups = ["ko:1", "ko:2", "ko:3", "en:4", "en:4"]
    b = scorer.baseline_from_pairs([k1, k2, k1, e1, e2], groups, n_pairs=50, seed=3)
    expected = scorer.score([k1], [k2])
    assert b[2] == pytest.approx(expected["F"][0], abs=1e-5)
    assert scorer.score([e1], [e2])["F"][0] != pytest.approx(expected["F"][0], abs=1e-3)

    seen = _record_raw(scorer, monkeypatch)
    first = scorer.baseline_from_pairs(CORPUS, GROUPS, n_pairs=30, seed=5)
    pairs_a = list(seen)
    seen.clear()
    assert scorer.baseline_from_pairs(CORPUS, GROUPS, n_pairs=30, seed=5) == first
    assert seen == pairs_a
    seen.clear()
    scorer.baseline_from_pairs(CORPUS, GROUPS, n_pairs=30, seed=6)
    assert seen != pairs_a

    with pytest.raises(ValueError, match="no valid pair"):
        scorer.baseline_from_pairs(CORPUS, ["ko:one"] * len(CORPUS), n_pairs=5)
    with pytest.raises(ValueError, match="no valid pair"):  # one group per language
        scorer.baseline_from_pairs([k1, e1], ["ko:1", "en:2"], n_pairs=5)
    with pytest.raises(ValueError, match="no valid pair"):  # the other group only has an empty text
        scorer.baseline_from_pairs([k1, k2, " "], ["ko:1", "ko:1", "ko:2"], n_pairs=5)
    with pytest.raises(ValueError, match="language:doc_id"):
        scorer.baseline_from_pairs([k1, k2], ["doc1", "doc2"], n_pairs=5)
    with pytest.raises(ValueError):
        scorer.baseline_from_pairs([k1, k2], ["ko:1"], n_pairs=5)
    with pytest.raises(ValueError):
        scorer.baseline_from_pairs([k1, k2], ["ko:1", "ko:2"], n_pairs=0)


def test_bertscore_nonempty_excludes_empty_candidates(bert_dir: Path) -> None:
    scorer = M.BertScorer(bert_dir)
    good_c, good_r = [CAND, CORPUS[2], REF], [REF, REF, CORPUS[3]]
    plain = scorer.score(good_c, good_r)
    cands = ["", CAND, "  ", CORPUS[2], "\n", REF]
    refs = [REF, REF, REF, REF, CORPUS[4], CORPUS[3]]
    out = M.bertscore_nonempty(scorer, cands, refs)
    assert set(out) == {"P", "R", "F", "empty", "invalid"}
    assert out["empty"] == [0, 2, 4] and out["invalid"] == []
    for key in ("P", "R", "F"):
        assert len(out[key]) == 6
        assert [out[key][k] for k in (0, 2, 4)] == [None, None, None]
        assert [out[key][k] for k in (1, 3, 5)] == pytest.approx(plain[key], abs=1e-6)

    def mean_f(res: dict) -> float:
        return float(np.mean([v for v in res["F"] if v is not None]))

    more_empty = M.bertscore_nonempty(scorer, [*cands, "", " "], [*refs, REF, REF])
    assert more_empty["empty"] == [0, 2, 4, 6, 7]
    assert mean_f(more_empty) == pytest.approx(mean_f(out), abs=1e-6)
    assert mean_f(out) == pytest.approx(float(np.mean(plain["F"])), abs=1e-6)

    # with a baseline: values are rescaled, empties stay None (not a large negative number)
    b = (0.8, 0.8, 0.8)
    rescaled = M.bertscore_nonempty(M.BertScorer(bert_dir, baseline=b), cands, refs)
    assert rescaled["empty"] == out["empty"]
    assert rescaled["F"][0] is None
    assert rescaled["F"][1] == pytest.approx(M.rescale(out["F"][1], 0.8), abs=1e-6)
    assert M.bertscore_nonempty(scorer, [], []) == {"P": [], "R": [], "F": [], "empty": [], "invalid": []}
    with pytest.raises(ValueError):
        M.bertscore_nonempty(scorer, ["a"], [])


def test_bertscore_nonempty_marks_invalid_pairs(bert_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    scorer = M.BertScorer(bert_dir)
    # an empty reference: not scored, invalid
    out = M.bertscore_nonempty(scorer, [CAND, REF], ["  ", REF])
    assert out["invalid"] == [0] and out["empty"] == []
    assert out["F"][0] is None and out["F"][1] == pytest.approx(1.0, abs=1e-4)

    # raw P or R <= 0 (forced): F (and P, R) None, listed as invalid, the rest untouched
    def fake_raw(cands, refs, batch_size):
        p = torch.tensor([0.9, -0.1, 0.8, 0.7])
        r = torch.tensor([0.8, 0.5, 0.0, 0.7])
        return p, r, 2 * p * r / (p + r)

    monkeypatch.setattr(scorer, "_raw", fake_raw)
    out = M.bertscore_nonempty(scorer, ["a", "b", "c", "", "d"], ["x", "y", "z", "w", "v"])
    assert out["empty"] == [3] and out["invalid"] == [1, 2]
    assert out["F"][1] is None and out["F"][2] is None and out["P"][1] is None
    assert out["F"][0] == pytest.approx(2 * 0.9 * 0.8 / 1.7, abs=1e-6)
    assert out["F"][4] == pytest.approx(0.7, abs=1e-6)


# --------------------------------------------------------------------------------------------------
# Sanity checks that can fail
# --------------------------------------------------------------------------------------------------


def test_cross_group_derangement() -> None:
    pairs = M._cross_group_derangement(GROUPS, 200, 0)
    assert pairs == M._cross_group_derangement(GROUPS, 200, 0)
    firsts = [k for k, _ in pairs]
    assert len(firsts) == len(set(firsts)) == len(GROUPS) - 2  # both English texts share a group
    for k, m in pairs:
        assert GROUPS[k] != GROUPS[m] and GROUPS[k].split(":")[0] == GROUPS[m].split(":")[0]
    assert len(M._cross_group_derangement(GROUPS, 3, 0)) == 3
    # one group holds most texts: a full derangement is impossible, same-group pairs are dropped
    lopsided = ["ko:a"] * 5 + ["ko:b"]
    for k, m in M._cross_group_derangement(lopsided, 100, 1):
        assert lopsided[k] != lopsided[m]
    assert M._cross_group_derangement(["ko:a", "ko:a"], 10, 0) == []


def test_metric_sanity_passes_on_real_refs(bert_dir: Path) -> None:
    scorer = M.BertScorer(bert_dir)
    baseline = scorer.baseline_from_pairs(CORPUS, GROUPS, n_pairs=500, seed=0)
    refs = [*CORPUS, "  "]  # the empty reference is dropped
    sanity = M.metric_sanity(scorer, refs, [*GROUPS, "ko:x"], baseline)
    assert sanity["rouge_self"] == pytest.approx(1.0)
    assert sanity["bertscore_self"] == pytest.approx(1.0, abs=1e-4)
    assert sanity["rouge_shuffled"] < 0.5
    assert abs(sanity["bertscore_shuffled_rescaled"]) < 0.15
    assert sanity["n_refs"] == len(CORPUS) and sanity["n_shuffled_pairs"] == len(CORPUS) - 2
    assert M.sanity_problems(sanity) == []
    assert M.metric_sanity(scorer, refs, [*GROUPS, "ko:x"], baseline) == sanity  # deterministic
    # without a scorer only the ROUGE checks run
    rouge_only = M.metric_sanity(None, CORPUS, GROUPS, None, rouge_kind="whitespace")
    assert set(rouge_only) == {"n_refs", "n_shuffled_pairs", "rouge_self", "rouge_shuffled"}
    assert M.sanity_problems(rouge_only) == []


def test_metric_sanity_fails_on_broken_rouge() -> None:
    def constant(preds: list[str], refs: list[str]) -> list[float]:
        return [0.3] * len(preds)

    problems = M.sanity_problems(M.metric_sanity(None, CORPUS, GROUPS, None, rouge_fn=constant))
    assert len(problems) == 1 and "rouge_self = 0.3000 < 0.9990" in problems[0]

    def wrong_reference(preds: list[str], refs: list[str]) -> list[float]:
        shifted = refs[1:] + refs[:1]
        return [row["rougeLsum_f"] for row in M.rouge_scores(preds, shifted, "kiwi")]

    sanity = M.metric_sanity(None, CORPUS, GROUPS, None, rouge_fn=wrong_reference)
    assert sanity["rouge_self"] < 0.6
    assert any(p.startswith("rouge_self") for p in M.sanity_problems(sanity))

    # rouge_score's own tokenizer drops Hangul: identical Korean references do not score 1
    default = M.metric_sanity(None, CORPUS, GROUPS, None, rouge_kind="default")
    assert any(p.startswith("rouge_self") for p in M.sanity_problems(default))


def test_metric_sanity_fails_on_wrong_baseline(bert_dir: Path) -> None:
    scorer = M.BertScorer(bert_dir)
    for wrong in ((0.0, 0.0, 0.0), (0.99, 0.99, 0.99)):
        sanity = M.metric_sanity(scorer, CORPUS, GROUPS, wrong)
        assert sanity["bertscore_self"] == pytest.approx(1.0, abs=1e-4)
        problems = M.sanity_problems(sanity)
        assert len(problems) == 1 and problems[0].startswith("|bertscore_shuffled_rescaled|")
        assert "> 0.15" in problems[0]


def test_sanity_problems_thresholds() -> None:
    good = {
        "rouge_self": 1.0,
        "rouge_shuffled": 0.1,
        "bertscore_self": 1.0,
        "bertscore_shuffled_rescaled": 0.02,
    }
    assert M.sanity_problems(good) == []
    (p,) = M.sanity_problems({**good, "rouge_shuffled": 0.9})
    assert "rouge_shuffled = 0.9000 > 0.5" in p
    (p,) = M.sanity_problems({**good, "bertscore_self": 0.98})
    assert p.startswith("bertscore_self = 0.9800 < 0.9990")
    (p,) = M.sanity_problems({**good, "bertscore_shuffled_rescaled": -0.4})
    assert "0.4000 > 0.15" in p and "-0.4000" in p
    assert M.sanity_problems({**good, "bertscore_self": 0.98}, self_tolerance=0.05) == []
    assert M.sanity_problems({**good, "rouge_shuffled": 0.9}, max_shuffled_rouge=0.95) == []
    (p,) = M.sanity_problems({**good, "rouge_shuffled": float("nan")})
    assert p.startswith("rouge_shuffled is nan")
    (p,) = M.sanity_problems({"rouge_shuffled": 0.1})
    assert p == "rouge_self is missing"
    # a check over one group only has no shuffled pairs and must not pass silently
    one_group = M.metric_sanity(None, CORPUS[:3], ["ko:a"] * 3, None)
    assert math.isnan(one_group["rouge_shuffled"])
    assert any("rouge_shuffled" in p for p in M.sanity_problems(one_group))
    with pytest.raises(ValueError):
        M.metric_sanity(None, ["  "], ["ko:a"], None)
    with pytest.raises(ValueError, match="language:doc_id"):
        M.metric_sanity(None, CORPUS[:2], ["a", "b"], None)
