"""The `student_trimmed_base` stage: the students' starting point with a trimmed vocabulary (`core.vocab`), cut to the training text.

`student_trimmed_base` reads the pruned `student_base` and the dataset: the kept set is the merge
closure of the training examples as the student sees them (cleaned prompts + summaries + chat
template), padded by merge rank to ``student.vocab_size``. Chunking keeps counting tokens with the full
tokenizer of `student_base` (no cycle: sections do not depend on the kept set). The data version is the
kept set's hash: a new document whose tokens are all already kept gives the same version and the same
folder (nothing is trimmed again). With ``vocab_size = None`` the asset passes `student_base` through.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from summ_assets.core.artifacts import cached_artifact, write_json
from summ_assets.core.dataset import read_split
from summ_assets.core.examples import build_examples
from summ_assets.core.integrity import check_files_exist, check_model_folder, first_problem
from summ_assets.core.modelcard import card_text, write_model_card
from summ_assets.core.models import base_version
from summ_assets.core.profiles import Profile
from summ_assets.core.spec import ProfileView
from summ_assets.core.vocab import CHUNK_TOKENIZER, MAP_FILE, VocabError, coverage, kept_vocab, trim_folder
from summ_assets.stages.base import Progress, StageError, StageResult, meta, say
from summ_assets.stages.specs import STUDENT_TRIMMED_BASE


def check_trimmed_folder(folder: Path) -> str | None:
    return first_problem(
        lambda: check_model_folder(folder),
        lambda: check_files_exist(
            folder, [MAP_FILE, "trim.json", ".summ_version", f"{CHUNK_TOKENIZER}/tokenizer.json"]
        ),
    )


def trimmed_base_stage(
    profile: Profile | ProfileView,
    root: Path,
    student_base: dict[str, Any],
    summary_dataset: str,
    log: Progress | None = None,
    warn: Progress | None = None,
) -> StageResult:
    """The student base cut to the merge closure of its training text (padded to student.vocab_size),
    in `root/<key>`; with vocab_size None, `student_base` itself."""
    from transformers import AutoTokenizer

    profile = STUDENT_TRIMMED_BASE.view(profile)
    size = profile.student.vocab_size
    seqkd = profile.student.seqkd_max_examples
    dp = profile.data
    if size is None:
        return StageResult(
            value={**student_base, "trimmed": False},
            metadata={"trimmed": meta(False, "bool"), "artifact": meta(student_base["path"], "path")},
            data_version=base_version(student_base),
        )
    tok = AutoTokenizer.from_pretrained(student_base["path"])
    train = build_examples(
        read_split(summary_dataset, "train"), tok, dp.max_prompt_tokens, dp.max_summary_tokens
    )
    if seqkd != 0:  # the unlabelled sections' prompts seq-KD trains on
        train += build_examples(
            [{**r, "summary": ""} for r in read_split(summary_dataset, "unlabelled")],
            tok,
            dp.max_prompt_tokens,
            dp.max_summary_tokens,
        )
    try:
        kept = kept_vocab(tok, [e["input_ids"] for e in train], size)
    except VocabError as exc:
        raise StageError(f"student.vocab_size: {exc}") from exc
    # same kept set and base -> same folder: a new document whose tokens are all kept trims nothing again
    target = Path(root) / STUDENT_TRIMMED_BASE.key(
        profile.profile, {"kept": kept.version(), "base": base_version(student_base)}
    )

    def build(tmp: Path) -> None:
        sizes = trim_folder(Path(student_base["path"]), kept, tmp)
        write_json(tmp / "trim.json", {**kept.summary(), **sizes, "base": student_base["path"]})
        write_model_card(
            tmp,
            "summ-assets student base (trimmed vocabulary)",
            {"student_base": student_base["path"], "summary_dataset": summary_dataset, "id_map": MAP_FILE},
            {"vocab_size": size},
            {**kept.summary(), **sizes},
            final=target,
        )
        (tmp / ".summ_version").write_text(f"{kept.version()}+{base_version(student_base)}\n")

    reused = target.exists()
    cached_artifact(target, build, log=log, check=check_trimmed_folder)
    info = json.loads((target / "trim.json").read_text())
    # what the cut leaves uncovered outside training, on val (the test sets stay unread outside evaluation)
    held = read_split(summary_dataset, "val")
    held_ids = [
        e["input_ids"] for e in build_examples(held, tok, dp.max_prompt_tokens, dp.max_summary_tokens)
    ]
    cover = coverage(kept, held_ids)
    if kept.grew:
        say(
            warn or log,
            f"the training text's merge closure ({kept.closure} tokens) is larger than student.vocab_size "
            f"({size}): kept the closure whole",
        )
    return StageResult(
        value={
            "path": str(target),
            "trimmed": True,
            "full_tokenizer": str(target / CHUNK_TOKENIZER),
            "vocab": info,
        },
        metadata={
            "artifact": meta(str(target), "path"),
            "trimmed": meta(True, "bool"),
            "kept_tokens": meta(kept.size, "int"),
            "requested": meta(size, "int"),
            "closure": meta(kept.closure, "int"),
            "training_text_tokens": meta(kept.text_ids, "int"),
            "grew_to_closure": meta(bool(kept.grew), "bool"),
            "full_vocabulary": meta(kept.source_size, "int"),
            "parameters": meta(int(info["parameters"]), "int"),
            "parameters_before": meta(int(info["parameters_before"]), "int"),
            "bytes_saved": meta(int(info["bytes_before"] - info["bytes"]), "int"),
            "val_token_coverage": meta(round(float(cover), 4), "float"),
            "reused": meta(bool(reused), "bool"),
            "model_card": meta(card_text(target), "md"),
        },
        data_version=kept.version(),
    )
