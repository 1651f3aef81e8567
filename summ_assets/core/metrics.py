"""Evaluation metrics for Korean summaries: ROUGE with Korean tokenizers, offline BERTScore, bootstrap.

Plain Python (no Dagster). Heavy libraries (kiwipiepy, rouge_score, bert_score, torch, transformers)
are imported inside functions or built lazily on first use, so importing this module is cheap.

ROUGE
    `rouge_score`'s default tokenizer keeps only ``[a-z0-9]`` tokens, so Hangul vanishes and two
    identical Korean strings score 0. `rouge_scores()` therefore takes a tokenizer kind:

    - ``"kiwi"`` (primary): Kiwi morphemes, lowercased, punctuation/symbol tags ``S*`` dropped except
      ``SL`` (foreign letters), ``SN`` (numbers), ``SH`` (hanja).
    - ``"whitespace"``: characters outside ``[0-9A-Za-z가-힣\\s]`` stripped, lowercased, split on spaces.
    - ``"char"``: every non-space character, lowercased.
    - ``"default"``: `rouge_score`'s own tokenizer; identical to ``RougeScorer([...])`` defaults
      (English parity only; never use it on Korean).

    For the Korean tokenizers ``rougeLsum`` sees one sentence per line (`split_sentences`, Kiwi
    ``split_into_sents``). Always store `tokenizer_name(kind)` with a score.

    The tokenizer classes subclass ``rouge_score.tokenizers.Tokenizer``; because that import pulls in
    nltk (~0.6 s), the classes are created on first attribute access (module ``__getattr__``).

BERTScore
    `BertScorer` wraps ``bert_score.BERTScorer`` on a LOCAL model folder with an explicit layer, so the
    model hub is never contacted (callers set ``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    from kiwipiepy import Kiwi
    from rouge_score.tokenizers import Tokenizer

    # Created lazily by `_tokenizer_classes()` and served by the module `__getattr__`.
    KiwiMorphTokenizer: type[Tokenizer]
    WhitespaceTokenizer: type[Tokenizer]
    CharTokenizer: type[Tokenizer]

__all__ = [
    "ROUGE_TYPES",
    "TOKENIZER_KINDS",
    "BertScorer",
    "CharTokenizer",
    "KiwiMorphTokenizer",
    "WhitespaceTokenizer",
    "bootstrap_ci",
    "clear_caches",
    "get_kiwi",
    "get_tokenizer",
    "middle_layer",
    "output_stats",
    "paired_bootstrap",
    "rescale",
    "rouge_scores",
    "split_sentences",
    "tokenizer_name",
]

ROUGE_TYPES: tuple[str, ...] = ("rouge1", "rouge2", "rougeLsum")
TOKENIZER_KINDS: tuple[str, ...] = ("kiwi", "whitespace", "char", "default")

# Kiwi tags starting with "S" are symbols/punctuation; these three carry content.
_KIWI_KEEP_S_TAGS = frozenset({"SL", "SN", "SH"})
_WS_STRIP = re.compile(r"[^0-9A-Za-z가-힣\s]")
_BERT_MAX_LEN = 512


# --------------------------------------------------------------------------------------------------
# Kiwi and sentences
# --------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def get_kiwi() -> Kiwi:
    """The single, module-wide Kiwi instance (construction takes ~1 s)."""
    from kiwipiepy import Kiwi

    return Kiwi()


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


def clear_caches() -> None:
    """Drop the cached Kiwi analyses (sentences, morphemes); the Kiwi instance itself stays."""
    _split_sentences_cached.cache_clear()
    _kiwi_morphs.cache_clear()


def split_sentences(text: str) -> list[str]:
    """Split `text` into sentences: existing line breaks first, then Kiwi ``split_into_sents``.

    Handles Korean endings without final punctuation (e.g. "...합니다 감사합니다"). Empty or
    whitespace-only input gives ``[]``.
    """
    return list(_split_sentences_cached(text))


@functools.lru_cache(maxsize=65536)
def _split_sentences_cached(text: str) -> tuple[str, ...]:
    kiwi = get_kiwi()
    out: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        out.extend(s.text.strip() for s in kiwi.split_into_sents(line) if s.text.strip())
    return tuple(out)


@functools.lru_cache(maxsize=65536)
def _kiwi_morphs(text: str) -> tuple[str, ...]:
    """Lowercased Kiwi morphemes without punctuation/symbol tags (S* except SL/SN/SH); cached."""
    if not text or not text.strip():
        return ()
    return tuple(
        t.form.lower()
        for t in get_kiwi().tokenize(text)
        if not (t.tag.startswith("S") and t.tag not in _KIWI_KEEP_S_TAGS) and t.form.strip()
    )


# --------------------------------------------------------------------------------------------------
# rouge_score tokenizers (created lazily: importing rouge_score imports nltk)
# --------------------------------------------------------------------------------------------------

_TOKENIZER_CLASS_NAMES = ("KiwiMorphTokenizer", "WhitespaceTokenizer", "CharTokenizer")


@functools.lru_cache(maxsize=1)
def _tokenizer_classes() -> dict[str, type]:
    from rouge_score.tokenizers import Tokenizer as _Base

    class KiwiMorphTokenizer(_Base):
        """Kiwi morphemes, lowercased; drops punctuation/symbol tags ``S*`` except SL/SN/SH."""

        name = f"kiwi-{_version('kiwipiepy')}-morph-nopunct"

        def tokenize(self, text: str) -> list[str]:
            return list(_kiwi_morphs(text))

    class WhitespaceTokenizer(_Base):
        """Eojeol tokens: strip chars outside ``[0-9A-Za-z가-힣\\s]``, lowercase, split on whitespace."""

        name = "whitespace-v1-hangul-alnum-lower"

        def tokenize(self, text: str) -> list[str]:
            return _WS_STRIP.sub(" ", text).lower().split()

    class CharTokenizer(_Base):
        """Every non-whitespace character, lowercased."""

        name = "char-v1-nospace-lower"

        def tokenize(self, text: str) -> list[str]:
            return [c for c in text.lower() if not c.isspace()]

    classes: dict[str, type] = {
        "KiwiMorphTokenizer": KiwiMorphTokenizer,
        "WhitespaceTokenizer": WhitespaceTokenizer,
        "CharTokenizer": CharTokenizer,
    }
    for cls in classes.values():
        cls.__module__ = __name__
        cls.__qualname__ = cls.__name__
    return classes


def __getattr__(name: str) -> Any:  # PEP 562: lazy tokenizer classes
    if name in _TOKENIZER_CLASS_NAMES:
        cls = _tokenizer_classes()[name]
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def get_tokenizer(kind: str) -> Tokenizer:
    """A `rouge_score` tokenizer instance for `kind` in `TOKENIZER_KINDS`."""
    if kind == "default":
        from rouge_score.tokenizers import DefaultTokenizer

        return DefaultTokenizer(use_stemmer=False)
    mapping = {"kiwi": "KiwiMorphTokenizer", "whitespace": "WhitespaceTokenizer", "char": "CharTokenizer"}
    if kind not in mapping:
        raise ValueError(f"unknown tokenizer {kind!r}; expected one of {TOKENIZER_KINDS}")
    return _tokenizer_classes()[mapping[kind]]()


def tokenizer_name(kind: str) -> str:
    """Stable id (with library version) to store next to every ROUGE score computed with `kind`."""
    if kind == "default":
        return f"rouge_score-{_version('rouge-score')}-default"
    return get_tokenizer(kind).name  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------------
# ROUGE
# --------------------------------------------------------------------------------------------------


def rouge_scores(
    predictions: Sequence[str],
    references: Sequence[str],
    tokenizer: str = "kiwi",
) -> list[dict[str, float]]:
    """Per-example ROUGE-1/2/Lsum with keys ``{type}_p``, ``{type}_r``, ``{type}_f``.

    ``tokenizer="default"`` reproduces ``RougeScorer(["rouge1", "rouge2", "rougeLsum"])`` exactly
    (texts are passed unchanged). For the Korean tokenizers each text is first split into sentences
    (`split_sentences`) and joined with ``"\\n"`` so that ``rougeLsum`` is sentence-level.
    """
    from rouge_score import rouge_scorer

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions vs {len(references)} references")
    if tokenizer == "default":
        scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES))

        def prep(text: str) -> str:
            return text
    else:
        scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), tokenizer=get_tokenizer(tokenizer))

        def prep(text: str) -> str:
            return "\n".join(split_sentences(text))

    out: list[dict[str, float]] = []
    for pred, ref in zip(predictions, references, strict=True):
        scores = scorer.score(target=prep(ref), prediction=prep(pred))
        row: dict[str, float] = {}
        for rtype in ROUGE_TYPES:
            s = scores[rtype]
            row[f"{rtype}_p"] = float(s.precision)
            row[f"{rtype}_r"] = float(s.recall)
            row[f"{rtype}_f"] = float(s.fmeasure)
        out.append(row)
    return out


# --------------------------------------------------------------------------------------------------
# BERTScore
# --------------------------------------------------------------------------------------------------


def _read_config(model_dir: Path) -> dict[str, Any]:
    cfg_path = model_dir / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path} not found: BertScorer needs a local model folder")
    return json.loads(cfg_path.read_text(encoding="utf-8"))


def middle_layer(model_dir: str | Path) -> int:
    """``num_hidden_layers // 2`` (at least 1) from the folder's config.json (``text_config`` if nested)."""
    cfg = _read_config(Path(model_dir))
    n = cfg.get("num_hidden_layers")
    if n is None and isinstance(cfg.get("text_config"), dict):
        n = cfg["text_config"].get("num_hidden_layers")
    if n is None:
        raise ValueError(f"no num_hidden_layers in {model_dir}/config.json")
    return max(1, int(n) // 2)


def _max_positions(cfg: dict[str, Any]) -> int | None:
    for c in (cfg, cfg.get("text_config") or {}):
        v = c.get("max_position_embeddings")
        if isinstance(v, int) and v > 0:
            return v
    return None


def rescale(value: float, baseline: float) -> float:
    """BERTScore baseline rescaling: ``(value - baseline) / (1 - baseline)``."""
    if baseline >= 1.0:
        raise ValueError(f"baseline must be < 1, got {baseline}")
    return (value - baseline) / (1.0 - baseline)


class BertScorer:
    """``bert_score.BERTScorer`` on a local model folder (encoder or decoder-only), loaded once.

    Args:
        model_dir: folder with config.json, weights and tokenizer (``save_pretrained`` output).
        num_layers: layer whose hidden states are matched; default = middle layer (`middle_layer`).
        model_id: name used in the hash instead of the folder path (default: the folder's name), e.g.
            ``"klue/roberta-large"`` when the folder holds that model.
        baseline: optional own (P, R, F) random-pair baseline; when given, `score` returns rescaled
            values and the hash says ``-custom-rescaled``.
        use_fast_tokenizer: passed to ``AutoTokenizer`` (``use_fast``).
        device: torch device; None lets bert_score choose (cuda if available).
    """

    def __init__(
        self,
        model_dir: str | Path,
        num_layers: int | None = None,
        *,
        model_id: str | None = None,
        baseline: tuple[float, float, float] | None = None,
        use_fast_tokenizer: bool = True,
        device: str | None = None,
    ) -> None:
        from bert_score import BERTScorer

        self.model_dir = Path(model_dir)
        cfg = _read_config(self.model_dir)
        self.num_layers = int(num_layers) if num_layers is not None else middle_layer(self.model_dir)
        self.model_id = model_id or self.model_dir.resolve().name
        self.baseline = tuple(float(b) for b in baseline) if baseline is not None else None
        self.use_fast_tokenizer = use_fast_tokenizer
        self.idf = False
        self._scorer = BERTScorer(
            model_type=str(self.model_dir),
            num_layers=self.num_layers,
            lang=None,
            idf=False,
            rescale_with_baseline=False,
            use_fast_tokenizer=use_fast_tokenizer,
            device=device,
        )
        # transformers 5: a missing model_max_length is a 1e30 sentinel that overflows the Rust
        # tokenizer when bert_score truncates (bert_score #205).
        tok = self._scorer._tokenizer
        if tok.model_max_length is None or tok.model_max_length > 1e29:
            limit = _BERT_MAX_LEN
            max_pos = _max_positions(cfg)
            if max_pos is not None:
                limit = min(limit, max_pos)
            tok.model_max_length = limit

    @property
    def hash(self) -> str:
        """bert_score's setting string, e.g. ``tiny_L1_no-idf_version=0.3.12(hug_trans=5.24.0)_fast-tokenizer``."""
        from bert_score.utils import get_hash

        rescaled = self.baseline is not None
        return get_hash(self.model_id, self.num_layers, self.idf, rescaled, rescaled, self.use_fast_tokenizer)

    def _raw(self, cands: Sequence[str], refs: Sequence[str], batch_size: int) -> tuple[Any, Any, Any]:
        if len(cands) != len(refs):
            raise ValueError(f"{len(cands)} candidates vs {len(refs)} references")
        return self._scorer.score(list(cands), list(refs), verbose=False, batch_size=batch_size)

    def score(
        self, cands: Sequence[str], refs: Sequence[str], batch_size: int = 32
    ) -> dict[str, list[float]]:
        """Per-pair ``{"P": [...], "R": [...], "F": [...]}`` (rescaled when a baseline was given)."""
        if len(cands) == 0 and len(refs) == 0:
            return {"P": [], "R": [], "F": []}
        p, r, f = self._raw(cands, refs, batch_size)
        out = {"P": p.tolist(), "R": r.tolist(), "F": f.tolist()}
        if self.baseline is not None:
            for key, b in zip(("P", "R", "F"), self.baseline, strict=True):
                out[key] = [rescale(v, b) for v in out[key]]
        return out

    def baseline_from_random_pairs(
        self, texts: Sequence[str], n_pairs: int = 1000, seed: int = 0, batch_size: int = 32
    ) -> tuple[float, float, float]:
        """Mean RAW (P, R, F) over `n_pairs` random pairs of different texts (i != j, duplicates removed).

        Use unrelated texts (e.g. sections of different documents); the result is the ``baseline``
        for rescaling (bert_score's own baselines have no Korean).
        """
        uniq = list(dict.fromkeys(t for t in texts if t.strip()))
        if len(uniq) < 2:
            raise ValueError("need at least two distinct non-empty texts")
        if n_pairs < 1:
            raise ValueError("n_pairs must be >= 1")
        rng = np.random.default_rng(seed)
        n = len(uniq)
        i = rng.integers(0, n, size=n_pairs)
        j = (i + rng.integers(1, n, size=n_pairs)) % n  # never equal to i
        p, r, f = self._raw([uniq[k] for k in i], [uniq[k] for k in j], batch_size)
        return float(p.mean()), float(r.mean()), float(f.mean())


# --------------------------------------------------------------------------------------------------
# Bootstrap
# --------------------------------------------------------------------------------------------------


def _bootstrap_means(x: np.ndarray, n_samples: int, seed: int) -> np.ndarray:
    """Means of `n_samples` resamples (with replacement) of `x`; memory bounded by chunking."""
    rng = np.random.default_rng(seed)
    n = x.shape[0]
    chunk = max(1, min(n_samples, 2_000_000 // max(n, 1)))
    means = np.empty(n_samples, dtype=np.float64)
    for start in range(0, n_samples, chunk):
        k = min(chunk, n_samples - start)
        idx = rng.integers(0, n, size=(k, n))
        means[start : start + k] = x[idx].mean(axis=1)
    return means


def _as_1d(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise ValueError(f"{what} is empty")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what} contains NaN or inf")
    return x


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, n_samples: int = 1000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float, float]:
    """(mean, low, high): sample mean and percentile-bootstrap ``1 - alpha`` interval (deterministic)."""
    x = _as_1d(values, "values")
    if n_samples < 1 or not 0.0 < alpha < 1.0:
        raise ValueError("n_samples must be >= 1 and 0 < alpha < 1")
    means = _bootstrap_means(x, n_samples, seed)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(x.mean()), float(low), float(high)


def paired_bootstrap(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    n_samples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, float]:
    """Paired bootstrap of ``mean(a - b)`` over the same examples.

    Returns ``mean_diff``, percentile interval ``low``/``high`` and ``p_value`` = share of resamples
    with mean difference <= 0 (one-sided test of "a is better than b").
    """
    xa, xb = _as_1d(a, "a"), _as_1d(b, "b")
    if xa.shape != xb.shape:
        raise ValueError(f"a and b differ in length: {xa.size} vs {xb.size}")
    if n_samples < 1 or not 0.0 < alpha < 1.0:
        raise ValueError("n_samples must be >= 1 and 0 < alpha < 1")
    d = xa - xb
    means = _bootstrap_means(d, n_samples, seed)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return {
        "mean_diff": float(d.mean()),
        "low": float(low),
        "high": float(high),
        "p_value": float(np.mean(means <= 0.0)),
    }


# --------------------------------------------------------------------------------------------------
# Output statistics
# --------------------------------------------------------------------------------------------------


def output_stats(texts: Sequence[str]) -> dict[str, float]:
    """``n``, ``mean_chars`` (length after strip), ``empty_share`` and ``multi_sentence_share``."""
    n = len(texts)
    if n == 0:
        return {"n": 0, "mean_chars": 0.0, "empty_share": 0.0, "multi_sentence_share": 0.0}
    stripped = [t.strip() for t in texts]
    return {
        "n": n,
        "mean_chars": float(np.mean([len(t) for t in stripped])),
        "empty_share": sum(1 for t in stripped if not t) / n,
        "multi_sentence_share": sum(1 for t in stripped if t and len(split_sentences(t)) > 1) / n,
    }
