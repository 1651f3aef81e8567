"""Which model folder to serve, and loading it (optionally quantized) with its tokenizer.

- `resolve_model_path(explicit)`: the `--model` folder, else the folder that
  ``<artifacts>/promoted_student/current.json`` points at (artifacts root = ``$SUMM_ARTIFACTS`` or
  ``./artifacts``), else a `ServingError` that says to run ``make demo`` or pass ``--model``.
- `load_model(path, ...)`: model + tokenizers loaded once, on the profile's device and dtype
  (fp32 on CPU), quantized as asked (``int8``: dynamic, CPU; ``8bit``/``4bit``: bitsandbytes, CUDA).
- `model_card(path)`: lineage, config and metrics of a model folder (its ``card.json`` written by
  `summ_assets.core.modelcard`, the scalars of ``training_metrics.json``, whether it is promoted).

torch and transformers are imported inside `load_model` only: importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from summ_assets.core.artifacts import artifacts_root
from summ_assets.core.lm import set_threads
from summ_assets.core.modelcard import ModelCardError, read_model_card
from summ_assets.core.models import count_parameters, load_causal_lm, resolve_device, torch_dtype
from summ_assets.core.profiles import Profile
from summ_assets.core.vocab import CHUNK_TOKENIZER

log = logging.getLogger(__name__)

QUANTIZE_CHOICES = ("int8", "8bit", "4bit")
POINTER = ("promoted_student", "current.json")


class ServingError(RuntimeError):
    """The model cannot be found, loaded or quantized as asked; the message says what to do."""


# ------------------------------------------------------------------------------------ model folder


def promoted_pointer() -> Path:
    """``<artifacts>/promoted_student/current.json``: the promoted student's pointer file."""
    return artifacts_root().joinpath(*POINTER)


def check_model_folder(path: Path, origin: str) -> Path:
    """`path` resolved when it is a Hugging Face model folder; a `ServingError` naming `origin` if not."""
    if not path.exists():
        raise ServingError(f"{origin}: {path} does not exist")
    if not path.is_dir():
        raise ServingError(f"{origin}: {path} is not a folder (expected a save_pretrained model folder)")
    if not (path / "config.json").is_file():
        raise ServingError(f"{origin}: {path} has no config.json; it is not a Hugging Face model folder")
    return path.resolve()


def resolve_model_path(explicit: str | Path | None) -> Path:
    """The model folder to serve: `explicit` if given, else the promoted student."""
    if explicit:
        return check_model_folder(Path(explicit).expanduser(), "--model")
    pointer = promoted_pointer()
    hint = "run `make demo` (trains, evaluates and promotes a student) or pass --model PATH"
    if not pointer.is_file():
        raise ServingError(f"no promoted student: {pointer} does not exist; {hint}")
    try:
        current = json.loads(pointer.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ServingError(f"{pointer}: unreadable ({exc}); {hint}") from exc
    path = current.get("path") if isinstance(current, dict) else None
    if not path:
        raise ServingError(
            f"{pointer}: no student has passed the promotion gates yet (path is empty); see "
            f"`summ-assets report`, or pass --model PATH"
        )
    return check_model_folder(Path(path), str(pointer))


def promoted_info() -> dict[str, Any]:
    """current.json of the promoted student, or {} (never raises)."""
    try:
        data = json.loads(promoted_pointer().read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def model_card(path: Path) -> dict[str, Any]:
    """Lineage, config and metrics of a model folder, from its card.json and training_metrics.json.

    A folder without a readable card.json (a plain Hugging Face folder, or one written by an older
    summ-assets that only wrote README.md) still gets its path, metrics and promotion status; the
    ``card_error`` key then says why the title, lineage and config are missing and what to do.
    """
    path = Path(path)
    out: dict[str, Any] = {"path": str(path)}
    try:
        card = read_model_card(path)
    except ModelCardError as exc:
        # worth a warning for a summ-assets folder (an old README-only card, a broken card.json); a plain
        # Hugging Face folder simply has no card
        log.log(logging.WARNING if exc.ours else logging.INFO, "%s", exc)
        out["card_error"] = str(exc)
    else:
        for key in ("title", "lineage", "config", "metrics"):
            if key in card:
                out[key] = card[key]
    metrics_file = path / "training_metrics.json"
    if metrics_file.is_file():
        with contextlib.suppress(OSError, ValueError):
            metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
            if isinstance(metrics, dict):
                # the loss curves are long lists; the scalars are what a caller wants
                scalars = {
                    k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool)) or v is None
                }
                out["metrics"] = {**out.get("metrics", {}), **scalars}
    promoted = promoted_info()
    if promoted.get("path") and Path(promoted["path"]).resolve() == path.resolve():
        out["promoted"] = {"version": promoted.get("version"), "report": promoted.get("report")}
    return out


# ------------------------------------------------------------------------------------------ loading


@dataclass
class LoadedModel:
    """A model ready for `model.generate`, its tokenizers and how it was loaded."""

    path: Path
    model: Any
    tokenizer: Any  # for generation (left padding, padded batches: used under the generation lock)
    chunk_tokenizer: Any  # a second instance for chunking (the Rust tokenizer is not shared across threads)
    device: str
    dtype: str
    quantize: str | None
    parameters: int
    do_sample: bool
    load_seconds: float


def load_model(
    model_path: str | Path,
    profile: Profile,
    *,
    quantize: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    threads: int | None = None,
) -> LoadedModel:
    """Load the model folder and its tokenizer on `device` (default: the profile's), quantized as asked.

    Every failure is a `ServingError` that says what to do (no such folder, unknown or impossible
    quantization, missing bitsandbytes, a folder transformers cannot load).
    """
    import torch
    from transformers import AutoTokenizer

    path = check_model_folder(Path(model_path), "model")
    if quantize is not None and quantize not in QUANTIZE_CHOICES:
        raise ServingError(f"--quantize {quantize!r}: choose one of {', '.join(QUANTIZE_CHOICES)}")
    device = resolve_device(device or profile.device)
    dtype = dtype or profile.dtype
    if device == "cpu" and dtype != "float32":
        dtype = "float32"  # half precision on CPU is slower and less accurate than fp32
    if device == "cpu":
        set_threads(threads or profile.threads)

    kwargs: dict[str, Any] = {}
    if quantize in ("8bit", "4bit"):
        if device != "cuda":
            raise ServingError(
                f"--quantize {quantize} uses bitsandbytes and needs a CUDA GPU (none here); "
                "on CPU use --quantize int8"
            )
        try:
            import bitsandbytes  # noqa: F401
        except ImportError as exc:
            raise ServingError(
                f"--quantize {quantize} needs the bitsandbytes package: pip install bitsandbytes"
            ) from exc
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = (
            BitsAndBytesConfig(load_in_8bit=True)
            if quantize == "8bit"
            else BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch_dtype(dtype)
            )
        )
        kwargs["device_map"] = {"": 0}
    elif quantize == "int8" and device != "cpu":
        raise ServingError(
            "--quantize int8 (dynamic quantization) runs on CPU only; on CUDA use 8bit or 4bit"
        )
    elif device == "cuda":
        kwargs["device_map"] = {"": 0}

    t0 = time.time()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        # a second instance for chunking: the generation tokenizer is switched to left padding and
        # padded batches while generating; the Rust tokenizer must not be shared across threads then
        # (a trimmed student carries the full tokenizer: sections are cut as the pipeline cut them)
        full = Path(path) / CHUNK_TOKENIZER
        chunk_tokenizer = AutoTokenizer.from_pretrained(full if full.is_dir() else path)
        # the pipeline's one loader: same dtype handling and Gemma attention as the evaluation that
        # promoted the model (device_map is explicit here: one GPU, or bitsandbytes' placement)
        model = load_causal_lm(path, dtype, device, device_map=kwargs.pop("device_map", None), **kwargs)
    except Exception as exc:
        raise ServingError(f"cannot load the model from {path}: {type(exc).__name__}: {exc}") from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    parameters = count_parameters(model)
    if quantize == "int8":
        with warnings.catch_warnings():  # torch's notice that quantized tensors are deprecated
            warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    model.eval()
    gen = model.generation_config
    return LoadedModel(
        path=path,
        model=model,
        tokenizer=tokenizer,
        chunk_tokenizer=chunk_tokenizer,
        device=device,
        dtype=dtype,
        quantize=quantize,
        parameters=parameters,
        do_sample=bool(getattr(gen, "do_sample", False)),
        load_seconds=time.time() - t0,
    )
