"""The students' starting point with a trimmed vocabulary (`core.vocab`), cut to the training text.

`student_trimmed_base` reads the pruned `student_base` and the dataset: the kept set is the merge
closure of the training examples as the student sees them (cleaned prompts + summaries + chat
template), padded by merge rank to ``student.vocab_size``. Chunking keeps counting tokens with the full
tokenizer of `student_base` (no cycle: sections do not depend on the kept set). The data version is the
kept set's hash: a new document whose tokens are all already kept gives the same version and the same
folder (nothing is trimmed again). With ``vocab_size = None`` the asset passes `student_base` through.
"""

import json
from pathlib import Path

import dagster as dg

from summ_assets.core.artifacts import cached_artifact, write_json
from summ_assets.core.dataset import read_split
from summ_assets.core.examples import build_examples
from summ_assets.core.integrity import check_files_exist, check_model_folder, first_problem
from summ_assets.core.modelcard import write_model_card
from summ_assets.core.models import base_version
from summ_assets.core.vocab import CHUNK_TOKENIZER, MAP_FILE, VocabError, coverage, kept_vocab, trim_folder
from summ_assets.defs.common import STUDENT_GROUP, code_version
from summ_assets.defs.resources import SummSettings

TRIM_CODE = "student-trimmed-base-v1"


def check_trimmed_folder(folder: Path) -> str | None:
    return first_problem(
        lambda: check_model_folder(folder),
        lambda: check_files_exist(
            folder, [MAP_FILE, "trim.json", ".summ_version", f"{CHUNK_TOKENIZER}/tokenizer.json"]
        ),
    )


@dg.asset(
    group_name=STUDENT_GROUP,
    code_version=code_version(TRIM_CODE, "student.vocab_size", "data", prompt=True),
    kinds={"pytorch", "huggingface"},
    description="The student base with its vocabulary trimmed to the merge closure of the training text "
    "(student.vocab_size rows; None = the base itself). Data version = the kept set.",
)
def student_trimmed_base(
    context: dg.AssetExecutionContext, settings: SummSettings, student_base: dict, summary_dataset: str
) -> dg.Output:
    from transformers import AutoTokenizer

    profile = settings.get_profile()
    size = profile.student.vocab_size
    if size is None:
        return dg.Output(
            {**student_base, "trimmed": False},
            data_version=dg.DataVersion(base_version(student_base)),
            metadata={"trimmed": False, "artifact": dg.MetadataValue.path(student_base["path"])},
        )
    tok = AutoTokenizer.from_pretrained(student_base["path"])
    dp = profile.data
    train = build_examples(
        read_split(summary_dataset, "train"), tok, dp.max_prompt_tokens, dp.max_summary_tokens
    )
    if profile.student.seqkd_max_examples != 0:  # the unlabelled sections' prompts seq-KD trains on
        train += build_examples(
            [{**r, "summary": ""} for r in read_split(summary_dataset, "unlabelled")],
            tok,
            dp.max_prompt_tokens,
            dp.max_summary_tokens,
        )
    try:
        kept = kept_vocab(tok, [e["input_ids"] for e in train], size)
    except VocabError as exc:
        raise dg.Failure(f"student.vocab_size: {exc}") from exc
    target = settings.asset_dir("student_trimmed_base") / kept.version()

    def build(tmp: Path) -> None:
        sizes = trim_folder(Path(student_base["path"]), kept, tmp)
        write_json(tmp / "trim.json", {**kept.summary(), **sizes, "base": student_base["path"]})
        write_model_card(
            tmp,
            "summ-assets student base (trimmed vocabulary)",
            {"student_base": student_base["path"], "summary_dataset": summary_dataset, "id_map": MAP_FILE},
            {"vocab_size": size},
            {**kept.summary(), **sizes},
        )
        (tmp / ".summ_version").write_text(f"{kept.version()}+{base_version(student_base)}\n")

    reused = target.exists()
    cached_artifact(target, build, log=context.log.info, check=check_trimmed_folder)
    info = json.loads((target / "trim.json").read_text())
    # what the cut leaves uncovered outside training, on val (the test sets stay unread outside evaluation)
    held = read_split(summary_dataset, "val")
    held_ids = [
        e["input_ids"] for e in build_examples(held, tok, dp.max_prompt_tokens, dp.max_summary_tokens)
    ]
    cover = coverage(kept, held_ids)
    if kept.grew:
        context.log.warning(
            f"the training text's merge closure ({kept.closure} tokens) is larger than student.vocab_size "
            f"({size}): kept the closure whole"
        )
    return dg.Output(
        {
            "path": str(target),
            "trimmed": True,
            "full_tokenizer": str(target / CHUNK_TOKENIZER),
            "vocab": info,
        },
        data_version=dg.DataVersion(kept.version()),
        metadata={
            "artifact": dg.MetadataValue.path(str(target)),
            "trimmed": True,
            "kept_tokens": kept.size,
            "requested": size,
            "closure": kept.closure,
            "training_text_tokens": kept.text_ids,
            "grew_to_closure": kept.grew,
            "full_vocabulary": kept.source_size,
            "parameters": int(info["parameters"]),
            "parameters_before": int(info["parameters_before"]),
            "bytes_saved": int(info["bytes_before"] - info["bytes"]),
            "val_token_coverage": float(cover),
            "reused": reused,
        },
    )
