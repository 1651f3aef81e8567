"""Evaluation metrics for Korean summaries: ROUGE with Korean tokenizers, offline BERTScore, sanity checks.

Paired comparisons of models (permutation test, document-clustered CIs) live in `core.stats`.

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

    Rescaling baseline: `BertScorer.baseline_from_pairs` averages RAW (P, R, F) over random pairs of
    texts from DIFFERENT groups of the SAME language (group = ``"language:doc_id"``; bert_score ships
    no Korean baseline). `BertScorer.baseline_from_random_pairs` is the older group-blind variant.

    `bertscore_nonempty` scores candidate/reference pairs but gives ``None`` (never 0 or a large
    negative rescaled value) for empty candidates and for pairs whose raw P or R is <= 0, and lists
    their indices, so means are taken over real scores only.

Languages
    `language_of` labels a text ``"ko"`` when Hangul syllables (가-힣) are >= 20 % of its letters,
    else ``"other"``.

Sanity checks
    `metric_sanity` runs checks that FAIL when a metric or baseline is wrong: references against
    themselves (ROUGE-Lsum F and raw BERTScore F must be 1), references against references of other
    groups (ROUGE must be low; BERTScore F rescaled with the baseline must be ~0). `sanity_problems`
    turns the numbers into human-readable failures (empty list = all good).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Sequence
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
    "bertscore_nonempty",
    "clear_caches",
    "get_kiwi",
    "get_tokenizer",
    "language_of",
    "metric_sanity",
    "middle_layer",
    "output_stats",
    "rescale",
    "rouge_scores",
    "sanity_problems",
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
        for rescaling (bert_score's own baselines have no Korean). Prefer `baseline_from_pairs`, which
        never pairs two texts of the same document or of different languages.
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

    def baseline_from_pairs(
        self,
        texts: Sequence[str],
        groups: Sequence[str],
        n_pairs: int = 500,
        seed: int = 0,
        batch_size: int = 32,
    ) -> tuple[float, float, float]:
        """Mean RAW (P, R, F) over `n_pairs` random pairs from different groups of the same language.

        ``groups[k]`` is the group of ``texts[k]``, written ``"language:doc_id"``; the language is the
        part before the first ``":"``. Empty/whitespace texts are dropped, and so are repeats of a text
        (the first occurrence and its group are kept). Pairs are drawn with
        ``numpy.random.default_rng(seed)``: ``i`` uniformly among the texts that have at least one
        partner (a text of the same language in another group; texts without one are skipped), then
        ``j`` uniformly among the partners of ``i``. The result is the ``baseline`` for rescaling.

        Raises:
            ValueError: lengths differ, ``n_pairs < 1``, a group has no ``":"``, or no valid pair
                exists (e.g. every language has a single group).
        """
        if len(texts) != len(groups):
            raise ValueError(f"{len(texts)} texts vs {len(groups)} groups")
        if n_pairs < 1:
            raise ValueError("n_pairs must be >= 1")
        kept: dict[str, str] = {}
        for text, group in zip(texts, groups, strict=True):
            _group_language(group)  # validate every group, kept or not
            if text.strip() and text not in kept:
                kept[text] = group
        uniq = list(kept)
        i, j = _cross_group_pairs(list(kept.values()), n_pairs, seed)
        p, r, f = self._raw([uniq[k] for k in i], [uniq[k] for k in j], batch_size)
        return float(p.mean()), float(r.mean()), float(f.mean())


# --------------------------------------------------------------------------------------------------
# Languages, groups, BERTScore without empty outputs
# --------------------------------------------------------------------------------------------------

# At least this share of a text's letters must be Hangul syllables for `language_of` to say "ko".
_KO_MIN_SHARE = 0.2


def language_of(text: str) -> str:
    """``"ko"`` when Hangul syllables (U+AC00 가 .. U+D7A3 힣) are >= 20 % of the letters, else ``"other"``.

    Letters are the characters with ``str.isalpha()`` (Hangul syllables, Latin, Hanja, Hangul jamo,
    ...); digits, punctuation and spaces are not counted. Jamo such as ``ㅋ`` are letters but not
    syllables. A text without letters (``""``, ``"123"``) is ``"other"``. So ``"RAG 시스템"`` (3 of
    6 letters) is ``"ko"`` and an English sentence quoting one Korean word usually is not.
    """
    letters = 0
    hangul = 0
    for ch in text:
        if ch.isalpha():
            letters += 1
            if "가" <= ch <= "힣":
                hangul += 1
    if letters == 0:
        return "other"
    return "ko" if hangul >= _KO_MIN_SHARE * letters else "other"


def _group_language(group: str) -> str:
    lang, sep, _ = group.partition(":")
    if not sep:
        raise ValueError(f"group {group!r} has no ':'; groups must look like 'language:doc_id'")
    return lang


def _cross_group_pairs(groups: Sequence[str], n_pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, j) with the same language and different groups; see `baseline_from_pairs`."""
    group_ids: dict[str, int] = {}
    lang_ids: dict[str, int] = {}
    g_code = np.empty(len(groups), dtype=np.int64)
    l_code = np.empty(len(groups), dtype=np.int64)
    for k, group in enumerate(groups):
        g_code[k] = group_ids.setdefault(group, len(group_ids))
        l_code[k] = lang_ids.setdefault(_group_language(group), len(lang_ids))
    # partners are shared by all texts of a group: compute them once per group
    partners: list[np.ndarray] = []
    for g in range(len(group_ids)):
        lang = l_code[np.argmax(g_code == g)]
        partners.append(np.flatnonzero((l_code == lang) & (g_code != g)))
    eligible = np.flatnonzero(np.array([partners[g].size > 0 for g in g_code], dtype=bool))
    if eligible.size == 0:
        per_lang: dict[str, set[str]] = {}
        for group in groups:
            per_lang.setdefault(_group_language(group), set()).add(group)
        counts = {lang: len(gs) for lang, gs in per_lang.items()}
        raise ValueError(
            "no valid pair: need two non-empty, distinct texts of the same language in different "
            f"groups; groups per language: {counts or 'none (no non-empty text)'}"
        )
    rng = np.random.default_rng(seed)
    i = eligible[rng.integers(0, eligible.size, size=n_pairs)]
    sizes = np.array([partners[g_code[k]].size for k in i], dtype=np.int64)
    pick = rng.integers(0, sizes)
    j = np.array([partners[g_code[k]][m] for k, m in zip(i, pick, strict=True)], dtype=np.int64)
    return i, j


def bertscore_nonempty(
    scorer: BertScorer, cands: Sequence[str], refs: Sequence[str], *, batch_size: int = 32
) -> dict[str, list[float | None]]:
    """Per-pair BERTScore where empty candidates and invalid pairs give ``None`` instead of a number.

    Returns ``{"P": [...], "R": [...], "F": [...], "empty": [indices], "invalid": [indices]}``; the
    P/R/F lists have one entry per pair (rescaled when ``scorer`` has a baseline, like
    `BertScorer.score`).

    - ``"empty"``: candidates that are empty after ``strip()``. They are not scored and P, R and F are
      ``None`` (bert_score would give raw 0, i.e. a large negative rescaled value, that would drag
      a mean down); report their count separately.
    - ``"invalid"``: the other pairs whose RAW P or R is <= 0 or not finite, or whose reference is
      empty. bert_score's F is the harmonic mean ``2PR / (P + R)`` of the raw cosine P and R, and is
      left as bert_score computes it (no zeroing); raw P and R are positive for these models' hidden
      states in practice, so F is only meaningful then. For an invalid pair P, R and F are all
      ``None`` (raw 0 is bert_score's marker for an empty side, not a similarity).

    Take means over the non-``None`` entries.
    """
    if len(cands) != len(refs):
        raise ValueError(f"{len(cands)} candidates vs {len(refs)} references")
    n = len(cands)
    out: dict[str, list[Any]] = {"P": [None] * n, "R": [None] * n, "F": [None] * n}
    empty = [k for k, c in enumerate(cands) if not c.strip()]
    invalid = [k for k, (c, r) in enumerate(zip(cands, refs, strict=True)) if c.strip() and not r.strip()]
    todo = [k for k, (c, r) in enumerate(zip(cands, refs, strict=True)) if c.strip() and r.strip()]
    if todo:
        p, r, f = scorer._raw([cands[k] for k in todo], [refs[k] for k in todo], batch_size)
        for k, pv, rv, fv in zip(todo, p.tolist(), r.tolist(), f.tolist(), strict=True):
            if not (np.isfinite([pv, rv, fv]).all() and pv > 0.0 and rv > 0.0):
                invalid.append(k)
                continue
            values = (pv, rv, fv)
            if scorer.baseline is not None:
                values = tuple(rescale(v, b) for v, b in zip(values, scorer.baseline, strict=True))
            out["P"][k], out["R"][k], out["F"][k] = values
    out["empty"] = empty
    out["invalid"] = sorted(invalid)
    return out


# --------------------------------------------------------------------------------------------------
# Sanity checks that can fail
# --------------------------------------------------------------------------------------------------


def _cross_group_derangement(groups: Sequence[str], n_pairs: int, seed: int) -> list[tuple[int, int]]:
    """Deterministic pairs (k, m): every k at most once, ``groups[m]`` another group of the same language.

    Within each language the groups are put in a seeded random order, their members laid out one
    group after another, and position ``q`` is paired with position ``(q + s) % n`` where ``s`` is the
    largest group size: a derangement across groups whenever no group holds more than half of its
    language's texts; otherwise the few same-group pairs are dropped. At most `n_pairs` pairs are kept
    (a seeded subset).
    """
    rng = np.random.default_rng(seed)
    by_lang: dict[str, dict[str, list[int]]] = {}
    for k, group in enumerate(groups):
        by_lang.setdefault(_group_language(group), {}).setdefault(group, []).append(k)
    pairs: list[tuple[int, int]] = []
    for members in by_lang.values():
        if len(members) < 2:
            continue
        names = list(members)
        seq = [k for g in rng.permutation(len(names)) for k in members[names[g]]]
        shift = max(len(v) for v in members.values())
        for q, k in enumerate(seq):
            m = seq[(q + shift) % len(seq)]
            if groups[m] != groups[k]:
                pairs.append((k, m))
    pairs.sort()
    if len(pairs) > n_pairs:
        keep = np.sort(rng.choice(len(pairs), size=n_pairs, replace=False))
        pairs = [pairs[q] for q in keep]
    return pairs


def metric_sanity(
    scorer: BertScorer | None,
    refs: Sequence[str],
    groups: Sequence[str],
    baseline: tuple[float, float, float] | None,
    *,
    rouge_kind: str = "kiwi",
    n_pairs: int = 200,
    seed: int = 0,
    rouge_fn: Callable[[list[str], list[str]], list[float]] | None = None,
    batch_size: int = 32,
) -> dict[str, float]:
    """Numbers that expose a broken metric or baseline; judge them with `sanity_problems`.

    ``groups[k]`` (``"language:doc_id"``) is the group of ``refs[k]``; empty references are dropped.
    `rouge_fn(predictions, references)` returns one ROUGE F per pair (default: ``rougeLsum_f`` of
    ``rouge_scores(..., rouge_kind)``); tests pass a deliberately broken one.

    Returns:
        ``rouge_self``: mean ROUGE of each reference against itself (1.0 for a correct metric).
        ``rouge_shuffled``: mean ROUGE of references against references of OTHER groups of the same
            language (a deterministic derangement, at most `n_pairs` pairs; see
            `_cross_group_derangement`); NaN when no such pair exists.
        ``bertscore_self``: mean RAW BERTScore F of each reference against itself (~1.0); only with
            a `scorer`.
        ``bertscore_shuffled_raw`` / ``bertscore_shuffled_rescaled``: mean raw F of the shuffled pairs,
            and that mean rescaled with ``baseline[2]`` (~0 when the baseline fits these texts); only
            with a `scorer` (rescaled: and a `baseline`). Raw scores are used whatever baseline the
            scorer itself carries.
        ``n_refs`` and ``n_shuffled_pairs``: how many references / shuffled pairs were used.
    """
    if len(refs) != len(groups):
        raise ValueError(f"{len(refs)} references vs {len(groups)} groups")
    for group in groups:
        _group_language(group)
    keep = [k for k, r in enumerate(refs) if r.strip()]
    if not keep:
        raise ValueError("metric_sanity needs at least one non-empty reference")
    texts = [refs[k] for k in keep]
    text_groups = [groups[k] for k in keep]

    def default_rouge(preds: list[str], targets: list[str]) -> list[float]:
        return [row["rougeLsum_f"] for row in rouge_scores(preds, targets, rouge_kind)]

    fn = rouge_fn if rouge_fn is not None else default_rouge

    pairs = _cross_group_derangement(text_groups, n_pairs, seed)
    shuf_a = [texts[k] for k, _ in pairs]
    shuf_b = [texts[m] for _, m in pairs]
    out: dict[str, float] = {
        "n_refs": float(len(texts)),
        "n_shuffled_pairs": float(len(pairs)),
        "rouge_self": float(np.mean(fn(list(texts), list(texts)))),
        "rouge_shuffled": float(np.mean(fn(shuf_a, shuf_b))) if pairs else float("nan"),
    }
    if scorer is not None:
        _, _, f_self = scorer._raw(texts, texts, batch_size)
        out["bertscore_self"] = float(f_self.mean())
        if pairs:
            _, _, f_shuf = scorer._raw(shuf_a, shuf_b, batch_size)
            out["bertscore_shuffled_raw"] = float(f_shuf.mean())
        else:
            out["bertscore_shuffled_raw"] = float("nan")
        if baseline is not None:
            out["bertscore_shuffled_rescaled"] = rescale(out["bertscore_shuffled_raw"], float(baseline[2]))
    return out


def sanity_problems(
    sanity: dict[str, float],
    *,
    self_tolerance: float = 1e-3,
    shuffled_rescaled_tolerance: float = 0.15,
    max_shuffled_rouge: float = 0.5,
) -> list[str]:
    """Human-readable failures of a `metric_sanity` result; an empty list means all checks pass.

    Fails when ``rouge_self`` or ``bertscore_self`` < ``1 - self_tolerance``, when
    ``|bertscore_shuffled_rescaled|`` > `shuffled_rescaled_tolerance`, when ``rouge_shuffled`` >
    `max_shuffled_rouge`, and when any of these is NaN. ``rouge_self`` and ``rouge_shuffled`` must be
    present; the BERTScore keys are checked when present.
    """
    problems: list[str] = []

    def value(key: str, required: bool) -> float | None:
        if key not in sanity:
            if required:
                problems.append(f"{key} is missing")
            return None
        v = float(sanity[key])
        if not np.isfinite(v):
            problems.append(
                f"{key} is {v} (not computable, e.g. no pair of references from different groups)"
            )
            return None
        return v

    for key, required in (("rouge_self", True), ("bertscore_self", False)):
        v = value(key, required)
        if v is not None and v < 1.0 - self_tolerance:
            problems.append(
                f"{key} = {v:.4f} < {1.0 - self_tolerance:.4f} (1 - {self_tolerance:g}): a reference "
                "scored against itself must be 1; the metric or its tokenization is broken"
            )
    v = value("rouge_shuffled", True)
    if v is not None and v > max_shuffled_rouge:
        problems.append(
            f"rouge_shuffled = {v:.4f} > {max_shuffled_rouge:g}: references of unrelated documents "
            "overlap too much; the metric does not separate related from unrelated texts"
        )
    v = value("bertscore_shuffled_rescaled", False)
    if v is not None and abs(v) > shuffled_rescaled_tolerance:
        problems.append(
            f"|bertscore_shuffled_rescaled| = {abs(v):.4f} > {shuffled_rescaled_tolerance:g} "
            f"(value {v:+.4f}): unrelated pairs should rescale to ~0; the baseline does not fit these texts"
        )
    return problems


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
