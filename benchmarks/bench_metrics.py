"""Throughput of summ_assets.core.metrics: Korean ROUGE and offline BERTScore on generated pairs.

Usage:
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_metrics.py [--n 1000] [--model LOCAL_DIR]
        [--num-layers K] [--batch-size 32] [--threads 1] [--seed 0]

Without --model a tiny random BertModel (hidden 64, 2 layers, WordPiece trained on the generated
sentences) is built in a temporary folder; its figure measures pipeline overhead, not a real encoder.
Prints one line per figure: ``<name>: <value> <unit>``.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from summ_assets.core.offline import use_offline_env

use_offline_env()

SUBJECTS = [
    "회의는",
    "연구팀은",
    "모델은",
    "시스템은",
    "학생들은",
    "보고서는",
    "박물관은",
    "서버는",
    "위원회는",
    "팀장은",
]
TIMES = ["오후 세 시에", "매주 월요일에", "내일 아침에", "다음 달에", "올해 안에", "주말마다", "점심 이후에"]
PLACES = ["본관 대회의실에서", "온라인으로", "연구소에서", "서울 본사에서", "클라우드에서", "도서관에서"]
OBJECTS = [
    "요약 성능을",
    "문서 검색 결과를",
    "새로운 데이터를",
    "LLM 응답을",
    "RAG 파이프라인을",
    "평가 지표를",
    "예산 계획을",
    "3단계 절차를",
]
VERBS = [
    "평가합니다.",
    "발표했다.",
    "검토한다.",
    "정리했습니다.",
    "개선할 예정이다.",
    "공유합니다.",
    "분석했다.",
]


def make_sentence(rng: random.Random) -> str:
    return " ".join(
        [rng.choice(SUBJECTS), rng.choice(TIMES), rng.choice(PLACES), rng.choice(OBJECTS), rng.choice(VERBS)]
    )


def make_pairs(n: int, seed: int) -> tuple[list[str], list[str]]:
    """References of 1-2 sentences; candidates drop/replace parts of them (or are unrelated)."""
    rng = random.Random(seed)
    cands, refs = [], []
    for _ in range(n):
        ref_sents = [make_sentence(rng) for _ in range(rng.choice([1, 1, 2]))]
        cand_sents = []
        for s in ref_sents:
            words = s.split()
            mode = rng.random()
            if mode < 0.4:  # drop a phrase
                del words[rng.randrange(1, len(words) - 1)]
            elif mode < 0.8:  # replace a phrase
                words[2] = rng.choice(PLACES).split()[-1]
            else:  # unrelated sentence
                words = make_sentence(rng).split()
            cand_sents.append(" ".join(words))
        refs.append(" ".join(ref_sents))
        cands.append(" ".join(cand_sents))
    return cands, refs


def build_tiny_bert(out: Path, texts: list[str]) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, BertTokenizerFast

    torch.manual_seed(0)
    raw = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    raw.normalizer = normalizers.NFC()
    raw.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    raw.decoder = decoders.WordPiece()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    raw.train_from_iterator(
        texts, trainers.WordPieceTrainer(vocab_size=2000, special_tokens=specials, show_progress=False)
    )
    raw.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", raw.token_to_id("[CLS]")), ("[SEP]", raw.token_to_id("[SEP]"))],
    )
    tok = BertTokenizerFast(
        tokenizer_object=raw,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
    )
    cfg = BertConfig(
        vocab_size=len(tok), hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128
    )
    BertModel(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def timed(fn):
    t0 = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="number of generated pairs")
    ap.add_argument("--model", type=Path, default=None, help="local model folder for BERTScore")
    ap.add_argument("--num-layers", type=int, default=None, help="BERTScore layer (default: middle)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch

    from summ_assets.core import metrics as M

    torch.set_num_threads(args.threads)
    cands, refs = make_pairs(args.n, args.seed)

    _, t_kiwi_load = timed(M.get_kiwi)
    print(f"kiwi_load_s: {t_kiwi_load:.2f} s")
    # the first split_into_sents / tokenize calls load more of Kiwi's model (~1-2 s): not throughput
    _, t_warm = timed(
        lambda: (M.split_sentences("준비 문장입니다. 두 번째 문장"), M.get_tokenizer("kiwi").tokenize("준비"))
    )
    print(f"kiwi_first_call_s: {t_warm:.2f} s")
    kiwi_rows: list[dict[str, float]] = []
    for kind in ("kiwi", "whitespace", "char", "default"):
        M.clear_caches()  # measure uncached analysis
        rows, dt = timed(lambda kind=kind: M.rouge_scores(cands, refs, tokenizer=kind))
        if kind == "kiwi":
            kiwi_rows = rows
        mean_r1 = sum(r["rouge1_f"] for r in rows) / len(rows)
        print(f"rouge_{kind}_throughput: {len(rows) / dt:.1f} examples/s ({M.tokenizer_name(kind)})")
        print(f"rouge_{kind}_mean_rouge1_f: {mean_r1:.4f}")
    M.clear_caches()
    M.rouge_scores(cands, refs, tokenizer="kiwi")
    _, dt = timed(lambda: M.rouge_scores(cands, refs, tokenizer="kiwi"))
    print(f"rouge_kiwi_cached_throughput: {len(cands) / dt:.1f} examples/s (same texts scored again)")

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model or build_tiny_bert(Path(tmp) / "tiny_bert", cands + refs)
        scorer, t_load = timed(lambda: M.BertScorer(model_dir, num_layers=args.num_layers))
        print(f"bertscore_load_s: {t_load:.2f} s ({scorer.hash})")
        scorer.score(cands[:8], refs[:8], batch_size=args.batch_size)  # warm-up
        scores, dt = timed(lambda: scorer.score(cands, refs, batch_size=args.batch_size))
        print(f"bertscore_throughput: {len(cands) / dt:.1f} examples/s (batch {args.batch_size})")
        print(f"bertscore_mean_f1: {sum(scores['F']) / len(scores['F']):.4f}")

    M.clear_caches()
    _, dt = timed(lambda: M.output_stats(cands))
    print(f"output_stats_throughput: {len(cands) / dt:.1f} texts/s")
    from summ_assets.core import stats as S

    # the pipeline's clustered bootstrap; these synthetic pairs share no document: each its own cluster
    r1 = [r["rouge1_f"] for r in kiwi_rows]
    ci, dt = timed(lambda: S.clustered_bootstrap_mean(r1, list(range(len(r1))), n_samples=1000, seed=0))
    print(
        f"bootstrap_ci_s: {dt:.3f} s (1000 resamples of {len(r1)}; kiwi R1 {ci['mean']:.4f} "
        f"[{ci['low']:.4f}, {ci['high']:.4f}])"
    )


if __name__ == "__main__":
    main()
