"""Remote side of the heavy stages, launched by Dagster Pipes (`summ_assets.defs.pipes`).

    python -m summ_assets.remote teacher_logits                     # one process
    python -m torch.distributed.run --standalone --nproc_per_node=8 -m summ_assets.remote teacher_logits
    accelerate launch --multi_gpu --num_processes 8 -m summ_assets.remote teacher_logits
    python -m summ_assets.remote teacher_adapter                    # one process (device_map="auto")

The stage, its profile, artifact folder and upstream values arrive as Pipes extras; the stage body is
the one the in-process asset runs (`summ_assets.stages.teacher`). Rank 0 opens the Pipes session,
forwards progress as Dagster logs and reports the materialization (metadata + data version) and the
asset's output value (a custom message) back to the orchestrator. Other ranks of a `torchrun` group
read the same extras, score their shards of the teacher-logit cache and meet rank 0 at a barrier
before it merges. Needs `dagster-pipes` only, not `dagster`.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import Any

from summ_assets.core.offline import use_offline_env
from summ_assets.stages.base import Dist, meta
from summ_assets.stages.teacher import STAGES, run_stage


def _extras_without_session() -> dict[str, Any]:
    """Pipes extras for ranks > 0: read the context the orchestrator injected, open no message channel
    (only rank 0 talks to Dagster)."""
    from dagster_pipes import PipesDefaultContextLoader, PipesEnvVarParamsLoader

    loader = PipesEnvVarParamsLoader()
    if not loader.is_dagster_pipes_process():
        raise SystemExit("summ_assets.remote: not launched by Dagster Pipes (no DAGSTER_PIPES_CONTEXT)")
    with PipesDefaultContextLoader().load_context(loader.load_context_params()) as data:
        return dict(data["extras"] or {})


def _init_group(dist: Dist) -> Any:
    """torch.distributed for a torchrun/accelerate group (gloo on CPU, nccl on GPUs); None for 1 process."""
    if dist.world_size <= 1:
        return None
    import torch
    import torch.distributed as td

    if torch.cuda.is_available():
        torch.cuda.set_device(dist.local_rank)
        td.init_process_group("nccl")
    else:
        td.init_process_group("gloo")
    dist.barrier = td.barrier
    return td


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m summ_assets.remote", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("stage", choices=STAGES)
    args = parser.parse_args(argv)
    use_offline_env()
    dist = Dist.from_env()
    group = _init_group(dist)
    where = {"host": socket.gethostname(), "pid": os.getpid()}
    try:
        if dist.rank != 0:

            def say(msg: str) -> None:
                print(f"[rank {dist.rank}] {msg}", file=sys.stderr, flush=True)

            run_stage(args.stage, _extras_without_session(), dist, progress=say, log=say)
            return 0

        from dagster_pipes import open_dagster_pipes

        with open_dagster_pipes() as pipes:
            pipes.log.info(
                f"remote {args.stage} on {where['host']} (pid {where['pid']}, {dist.world_size} process(es))"
            )
            result = run_stage(
                args.stage, dict(pipes.extras), dist, progress=pipes.log.info, log=pipes.log.info
            )
            assert result is not None  # rank 0 always returns the result
            metadata = {
                **result.metadata,
                "launcher": meta("pipes", "text"),
                "remote/host": meta(where["host"], "text"),
                "remote/pid": meta(where["pid"], "int"),
                "remote/processes": meta(dist.world_size, "int"),
            }
            pipes.report_asset_materialization(metadata=metadata, data_version=result.data_version)
            pipes.report_custom_message({"value": result.value})
        return 0
    finally:
        if group is not None and group.is_initialized():
            group.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
