"""The environment every entry point sets: no model hub, quiet progress bars."""

from __future__ import annotations

import os

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TOKENIZERS_PARALLELISM": "false",
}


def use_offline_env() -> None:
    """Set the offline defaults (values the user already exported win)."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
