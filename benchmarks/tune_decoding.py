"""Choose the decoding settings (repetition control) on val only.

Reuses what `make demo` left in artifacts/ (the distilled student and the dataset). Every setting is a
pair ``no_repeat_ngram_size:repetition_penalty`` (``:0`` appended: without the one-sentence cut); for each, the student summarizes the whole val split
(whole held-out documents, the only set a choice may look at) and the script prints val ROUGE-Lsum
(Kiwi), the degenerate share of the raw generations and of the final (one-line, one-sentence)
summaries, and the mean new tokens. The chosen setting is the best val ROUGE-Lsum among those whose
final degenerate share is within ``eval.max_degenerate_share``. No test set is read.

    .venv/bin/python -m benchmarks.tune_decoding 0:1.0:0 0:1.0 4:1.0 0:1.1 4:1.1 3:1.2
"""

from __future__ import annotations

import pickle
import sys
import time
from dataclasses import replace
from pathlib import Path

from summ_assets.core.offline import use_offline_env

DEFAULT = ("0:1.0:0", "0:1.0", "4:1.0", "0:1.1", "4:1.1", "3:1.2")


def main(argv: list[str]) -> int:
    use_offline_env()
    from transformers import AutoTokenizer

    from summ_assets.core.dataset import read_split
    from summ_assets.core.decoding import summarize_texts
    from summ_assets.core.degeneration import shares
    from summ_assets.core.lm import set_threads
    from summ_assets.core.metrics import rouge_scores
    from summ_assets.core.models import load_causal_lm
    from summ_assets.core.profiles import get_profile

    root = Path("artifacts")
    io = root / "_dagster_io"
    if not (io / "student_model").exists():
        print("run `make demo` first (no artifacts/_dagster_io/student_model)", file=sys.stderr)
        return 2
    student = pickle.loads((io / "student_model").read_bytes())
    dataset = pickle.loads((io / "summary_dataset").read_bytes())
    profile = get_profile()
    set_threads(profile.threads)
    val = read_split(dataset, "val")
    tok = AutoTokenizer.from_pretrained(student["path"])
    model = load_causal_lm(student["path"])
    print(f"student {student['path']}; val n = {len(val)} ({len({r['doc_id'] for r in val})} documents)")
    print(f"{'setting':>10} {'R-Lsum':>7} {'raw degen':>9} {'final degen':>11} {'tokens':>6} {'s':>5}")
    results = []
    for setting in argv or DEFAULT:
        ngram, penalty, *cut = setting.split(":")
        ev = replace(
            profile.eval,
            no_repeat_ngram_size=int(ngram),
            repetition_penalty=float(penalty),
            one_sentence=(cut or ["1"])[0] not in ("0", "false"),
        )
        t0 = time.time()
        outs, st = summarize_texts(
            model,
            tok,
            [r["text"] for r in val],
            max_prompt_tokens=profile.data.max_prompt_tokens,
            max_new_tokens=ev.max_new_tokens,
            batch_size=ev.batch_size,
            no_repeat_ngram_size=ev.no_repeat_ngram_size,
            repetition_penalty=ev.repetition_penalty,
            one_sentence=ev.one_sentence,
        )
        rouge = [s["rougeLsum_f"] for s in rouge_scores(outs, [r["summary"] for r in val], "kiwi")]
        r_mean = sum(rouge) / len(rouge)
        raw_d, fin_d = shares(st["raw"])["degenerate"], shares(outs)["degenerate"]
        tokens = sum(st["row_tokens"]) / len(val)
        results.append((setting, r_mean, fin_d))
        print(
            f"{setting:>10} {r_mean:7.4f} {raw_d:9.0%} {fin_d:11.0%} {tokens:6.1f} {time.time() - t0:5.0f}",
            flush=True,
        )
    ok = [r for r in results if r[2] <= profile.eval.max_degenerate_share] or results
    best = max(ok, key=lambda r: r[1])
    print(
        f"chosen on val: {best[0]} (ROUGE-Lsum {best[1]:.4f}, final degenerate {best[2]:.0%}); "
        f"profile now: {profile.eval.no_repeat_ngram_size}:{profile.eval.repetition_penalty}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
