"""Vocabulary trimming: a BPE tokenizer and its model cut to the tokens the training text needs.

The kept set (`kept_vocab`) is every id the training examples use, closed under the BPE merges that
build them: for a kept token, both parts of **every** merge that yields it are kept too (a token can
be built by several merges and which one fires depends on the word). With the role tokens (pad, bos,
eos, unk, mask, ``<start_of_turn>``, ``<end_of_turn>``), all byte-fallback tokens and, up to the
requested size, padding in this order: the single letters of the scripts the training text writes
in (an unseen Korean word then costs a token per syllable, not three byte tokens), then the
earliest-ranked merges whose parts are kept, first those written in those scripts. A merge survives when both parts
and its result are kept; merges keep their rank order. So on the training text the trimmed tokenizer
applies, at every step, the same lowest-ranked merge as the full one (same tokens), and text outside
it falls back to shorter kept pieces and finally to byte tokens (decoding is unchanged).

Student id ``i`` is full id ``old_ids[i]`` (ascending, so the special tokens keep the low ids).
`trim_tokenizer` rebuilds ``tokenizer.json``; `trim_model` gathers the embedding / LM-head rows;
`map_teacher_row` carries a teacher-logit cache row (full ids) into student ids, the teacher mass on
ids the student lacks joining the tail bucket.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MAP_FILE = "vocab_map.json"
CHUNK_TOKENIZER = "chunk_tokenizer"  # the full tokenizer, beside a trimmed model
ROLE_ATTRS = ("pad_token", "bos_token", "eos_token", "unk_token", "mask_token")
ROLE_STRINGS = ("<start_of_turn>", "<end_of_turn>")


class VocabError(ValueError):
    """A trimming setting or input that cannot work; the message names it."""


@dataclass(frozen=True)
class KeptVocab:
    old_ids: tuple[int, ...]  # student id i = full id old_ids[i]
    source_size: int  # rows of the full vocabulary
    requested: int  # the configured size
    closure: int  # text ids + merge closure + roles + bytes (before padding)
    text_ids: int  # distinct ids the training text uses
    grew: bool  # the closure was larger than `requested`: kept it whole
    tokenizer_hash: str  # sha256 of the full tokenizer.json it was cut from

    @property
    def size(self) -> int:
        return len(self.old_ids)

    def version(self) -> str:
        """The data version of a trimmed base: the kept set itself (same set -> same version)."""
        return hashlib.sha256(json.dumps([self.tokenizer_hash, self.old_ids]).encode()).hexdigest()[:24]

    def old_to_new(self) -> dict[int, int]:
        return {old: new for new, old in enumerate(self.old_ids)}

    def summary(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("old_ids")
        return {**d, "size": self.size, "version": self.version()}

    def save(self, folder: Path) -> None:
        from summ_assets.core.artifacts import write_json

        write_json(Path(folder) / MAP_FILE, {**asdict(self), "old_ids": list(self.old_ids)})

    @classmethod
    def load(cls, folder: Path) -> KeptVocab:
        d = json.loads((Path(folder) / MAP_FILE).read_text())
        return cls(**{**d, "old_ids": tuple(d["old_ids"])})


def _spec(tokenizer: Any) -> dict[str, Any]:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise VocabError(f"{type(tokenizer).__name__} has no fast (tokenizers) backend: trimming needs one")
    spec = json.loads(backend.to_str())
    kind = spec.get("model", {}).get("type")
    if kind != "BPE":
        raise VocabError(
            f"the student tokenizer's model is {kind!r}, not BPE: vocabulary trimming needs BPE merges"
        )
    return spec


def _merge_pairs(merges: list[Any]) -> list[tuple[str, str]]:
    return [tuple(m.split(" ", 1)) if isinstance(m, str) else (m[0], m[1]) for m in merges]  # type: ignore[misc]


def tokenizer_hash(tokenizer: Any) -> str:
    """Hash of the full tokenizer's definition. Padding and truncation are left out: they are runtime
    state a call such as ``apply_chat_template(padding=True)`` leaves on the backend, not the vocabulary."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    spec.pop("padding", None)
    spec.pop("truncation", None)
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def role_ids(tokenizer: Any) -> set[int]:
    ids = set()
    for attr in ROLE_ATTRS:
        tok = getattr(tokenizer, attr, None)
        if tok:
            ids.add(int(tokenizer.convert_tokens_to_ids(tok)))
    vocab = tokenizer.get_vocab()
    ids.update(vocab[s] for s in ROLE_STRINGS if s in vocab)
    return ids


SPACE = "\u2581"  # SentencePiece's word-start marker


def _letter_script(ch: str) -> str | None:
    """The script of a letter (the first word of its Unicode name: HANGUL, CJK, LATIN, ...), else None."""
    import unicodedata

    if not unicodedata.category(ch).startswith("L"):
        return None
    name = unicodedata.name(ch, "")
    return name.split(" ", 1)[0] or None


def text_scripts(tokens: Iterable[str]) -> set[str]:
    """The scripts of the non-ASCII letters in `tokens` (English in a Korean text adds nothing: its
    ASCII letters are base tokens the closure already holds)."""
    return {s for t in tokens for ch in t if not ch.isascii() and (s := _letter_script(ch))}


def _written_in(token: str, scripts: set[str]) -> bool:
    """True when every letter of `token` is ASCII or of one of `scripts` (marks, digits, spaces pass)."""
    return all(ch.isascii() or (s := _letter_script(ch)) is None or s in scripts for ch in token)


def kept_vocab(tokenizer: Any, id_lists: Iterable[Iterable[int]], size: int) -> KeptVocab:
    """The kept set for the training examples' ids (see the module doc). `size` below the number of
    distinct ids the text itself uses is an error; between that and the closure, the closure is kept
    whole (``grew``)."""
    spec = _spec(tokenizer)
    vocab: dict[str, int] = spec["model"]["vocab"]
    by_id = {i: t for t, i in vocab.items()}
    text = {int(i) for ids in id_lists for i in ids}
    if size < len(text):
        raise VocabError(
            f"student vocab_size {size} is below the {len(text)} distinct tokens the training text uses; "
            f"raise it to at least {len(text)}"
        )
    kept_ids = set(text) | role_ids(tokenizer)
    kept_ids.update(vocab[b] for b in (f"<0x{i:02X}>" for i in range(256)) if b in vocab)
    pairs = _merge_pairs(spec["model"]["merges"])
    producers: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for a, b in pairs:
        producers[a + b].append((a, b))
    kept = {by_id[i] for i in kept_ids if i in by_id}
    stack = list(kept)
    while stack:
        for a, b in producers.get(stack.pop(), ()):
            for part in (a, b):
                if part not in kept and part in vocab:
                    kept.add(part)
                    stack.append(part)
    kept_ids |= {vocab[t] for t in kept}
    closure = len(kept_ids)
    grew = closure > size
    if not grew:
        scripts = text_scripts(by_id[i] for i in text if i in by_id)
        # 1. the single letters of the scripts the training text writes in: an unseen word then costs
        #    a token per letter, not three byte tokens (a Hangul syllable is 3 UTF-8 bytes)
        for t, i in sorted(vocab.items(), key=lambda kv: kv[1]):
            if len(kept_ids) >= size:
                break
            core = t.removeprefix(SPACE)
            if len(core) == 1 and _letter_script(core) in scripts and t not in kept:
                kept.add(t)
                kept_ids.add(i)
        # 2. merges in rank order, earliest first, whose parts are kept: first those written in the
        #    training text's scripts (and ASCII), then any
        #    (which merges are written in the scripts is decided once, not on every pass)
        for candidates in ([(a, b) for a, b in pairs if _written_in(a + b, scripts)], pairs):
            added = True
            while added and len(kept_ids) < size:
                added = False
                for a, b in candidates:
                    if len(kept_ids) >= size:
                        break
                    r = a + b
                    if a in kept and b in kept and r not in kept and r in vocab:
                        kept.add(r)
                        kept_ids.add(vocab[r])
                        added = True
    return KeptVocab(
        old_ids=tuple(sorted(kept_ids)),
        source_size=len(tokenizer),
        requested=size,
        closure=closure,
        text_ids=len(text),
        grew=grew,
        tokenizer_hash=tokenizer_hash(tokenizer),
    )


def _remap_processor(node: Any, remap: dict[int, int]) -> Any:
    """Post-processor special-token ids (TemplateProcessing, nested Sequences) in student ids."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "ids" and isinstance(v, list) and all(isinstance(x, int) for x in v):
                out[k] = [remap[x] for x in v]
            elif k in ("sep", "cls") and isinstance(v, list) and len(v) == 2 and isinstance(v[1], int):
                out[k] = [v[0], remap[v[1]]]
            else:
                out[k] = _remap_processor(v, remap)
        return out
    if isinstance(node, list):
        return [_remap_processor(x, remap) for x in node]
    return node


def trimmed_spec(spec: dict[str, Any], kept: KeptVocab) -> dict[str, Any]:
    """tokenizer.json content re-indexed to the kept set: vocabulary, merges (rank order kept), added
    tokens and post-processor ids remapped; normalizer, pre-tokenizer and decoder unchanged."""
    remap = kept.old_to_new()
    model = dict(spec["model"])
    vocab = {t: remap[i] for t, i in model["vocab"].items() if i in remap}
    merges = model["merges"]
    pairs = _merge_pairs(merges)
    keep = [i for i, (a, b) in enumerate(pairs) if a in vocab and b in vocab and (a + b) in vocab]
    model["vocab"] = vocab
    model["merges"] = [merges[i] for i in keep]
    out = dict(spec)
    out["model"] = model
    out["added_tokens"] = [
        {**t, "id": remap[t["id"]]} for t in spec.get("added_tokens", []) if t["id"] in remap
    ]
    if spec.get("post_processor") is not None:
        out["post_processor"] = _remap_processor(spec["post_processor"], remap)
    return out


def trim_tokenizer(tokenizer: Any, kept: KeptVocab, out_dir: Path) -> Any:
    """Save the trimmed tokenizer (same special tokens, chat template and settings) to `out_dir`;
    returns it loaded with plain `AutoTokenizer.from_pretrained`."""
    from transformers import AutoTokenizer

    out_dir = Path(out_dir)
    tokenizer.save_pretrained(out_dir)
    spec = trimmed_spec(_spec(tokenizer), kept)
    (out_dir / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    cfg_file = out_dir / "tokenizer_config.json"
    if cfg_file.exists():
        cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
        if "added_tokens_decoder" in cfg:
            remap = kept.old_to_new()
            cfg["added_tokens_decoder"] = {
                str(remap[int(k)]): v for k, v in cfg["added_tokens_decoder"].items() if int(k) in remap
            }
        extra = cfg.get("extra_special_tokens") or cfg.get("additional_special_tokens")
        if isinstance(extra, list):
            vocab = set(spec["model"]["vocab"]) | {t["content"] for t in spec["added_tokens"]}
            key = "extra_special_tokens" if "extra_special_tokens" in cfg else "additional_special_tokens"
            cfg[key] = [t for t in extra if t in vocab]
        cfg_file.write_text(json.dumps(cfg, ensure_ascii=False, indent=2), encoding="utf-8")
    trimmed = AutoTokenizer.from_pretrained(out_dir)
    trimmed.save_pretrained(out_dir)
    return trimmed


def trim_model(model: Any, kept: KeptVocab) -> Any:
    """Gather the kept rows of the input embedding (and of an untied LM head) in place; vocab_size and
    the special ids of the config and generation config follow."""
    import torch

    idx = torch.tensor(kept.old_ids, dtype=torch.long)
    emb = model.get_input_embeddings()
    emb.weight = torch.nn.Parameter(emb.weight.data.index_select(0, idx).clone())
    emb.num_embeddings = kept.size
    remap = kept.old_to_new()
    if getattr(emb, "padding_idx", None) is not None:
        emb.padding_idx = remap.get(emb.padding_idx)
    head = model.get_output_embeddings()
    if head is not None:
        if getattr(model.config, "tie_word_embeddings", False):
            head.weight = emb.weight
        else:
            head.weight = torch.nn.Parameter(head.weight.data.index_select(0, idx).clone())
        if getattr(head, "bias", None) is not None:
            head.bias = torch.nn.Parameter(head.bias.data.index_select(0, idx).clone())
        head.out_features = kept.size
    model.config.vocab_size = kept.size

    def new_id(v: Any) -> Any:
        if isinstance(v, list):
            return [remap[x] for x in v if x in remap]
        return remap.get(v) if isinstance(v, int) else v

    for cfg in (model.config, getattr(model, "generation_config", None)):
        if cfg is None:
            continue
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
            if getattr(cfg, name, None) is not None:
                setattr(cfg, name, new_id(getattr(cfg, name)))
    return model


def map_teacher_row(row: dict[str, Any], old_to_new: dict[int, int]) -> dict[str, Any]:
    """A teacher-logit cache row (full-vocabulary ids) in student ids: target ids mapped (every target
    is kept: the text's own ids are), stored ids the student lacks dropped and their mass added to the
    tail bucket (log-sum-exp)."""
    ids, lps, tails = [], [], []
    for pos_ids, pos_lp, tail in zip(row["token_ids"], row["logprobs"], row["tail_logprob"], strict=True):
        keep_ids, keep_lp, moved = [], [], [tail]
        for i, lp in zip(pos_ids, pos_lp, strict=True):
            if i in old_to_new:
                keep_ids.append(old_to_new[i])
                keep_lp.append(lp)
            else:
                moved.append(lp)
        finite = [x for x in moved if x is not None and math.isfinite(x)]
        top = max(finite) if finite else float("-inf")
        tails.append(top + math.log(sum(math.exp(x - top) for x in finite)) if finite else float("-inf"))
        ids.append(keep_ids)
        lps.append(keep_lp)
    targets = [old_to_new[t] for t in row["target_ids"]]
    return {**row, "token_ids": ids, "logprobs": lps, "tail_logprob": tails, "target_ids": targets}


def in_student_ids(examples: list[dict[str, Any]], kept: KeptVocab) -> tuple[list[dict[str, Any]], int]:
    """Examples tokenized with the full tokenizer, in student ids (their `example_key`, over the full
    ids, still finds the teacher's cache rows). An example using an id the student lacks is left out;
    returns (examples, how many were left out). The training examples the kept set was built from
    never are."""
    remap = kept.old_to_new()
    out = []
    for e in examples:
        if all(i in remap for i in e["input_ids"]):
            out.append({**e, "input_ids": [remap[i] for i in e["input_ids"]]})
    return out, len(examples) - len(out)


def map_cache(cache: dict[str, dict[str, Any]], kept: KeptVocab) -> dict[str, dict[str, Any]]:
    """`map_teacher_row` over a loaded cache {example_key: row}."""
    remap = kept.old_to_new()
    return {k: map_teacher_row(r, remap) for k, r in cache.items()}


def trim_folder(base_dir: Path, kept: KeptVocab, out_dir: Path) -> dict[str, Any]:
    """A trimmed copy of the `save_pretrained` folder `base_dir` in `out_dir`: model rows gathered,
    tokenizer rebuilt, the id map (`MAP_FILE`) and the full tokenizer (``chunk_tokenizer/``: sections are
    cut with the pipeline's token budget, never the trimmed tokenizer's) beside them. Returns sizes."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base_dir)
    if tokenizer_hash(tok) != kept.tokenizer_hash:
        raise VocabError(
            f"the kept set was cut from another tokenizer ({kept.tokenizer_hash}) than {base_dir}'s "
            f"({tokenizer_hash(tok)}): recompute it (student.vocab_size)"
        )
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    before = sum(p.numel() for p in model.parameters())
    trim_model(model, kept)
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    trim_tokenizer(tok, kept, out_dir)
    tok.save_pretrained(out_dir / CHUNK_TOKENIZER)
    kept.save(out_dir)
    after = sum(p.numel() for p in model.parameters())
    size = lambda d: sum(f.stat().st_size for f in Path(d).glob("*.safetensors"))  # noqa: E731
    return {
        "parameters_before": before,
        "parameters": after,
        "bytes_before": size(base_dir),
        "bytes": size(out_dir),
    }


def coverage(kept: KeptVocab, id_lists: Iterable[Iterable[int]]) -> float:
    """Share of the tokens of `id_lists` (full ids) whose id the student keeps."""
    ids = set(kept.old_ids)
    total = hit = 0
    for seq in id_lists:
        for i in seq:
            total += 1
            hit += i in ids
    return hit / total if total else 1.0
