"""Heavy stages that run the same way in-process and on a remote machine through Dagster Pipes.

`stages.py` holds the stage bodies (plain Python, no dagster import: a GPU pod needs only
`dagster-pipes`); `summ_assets.remote` is the remote entry point (`python -m summ_assets.remote
teacher_logits`); `summ_assets.defs.pipes` is the orchestration side (Pipes clients, the launcher
switch, the launch commands).
"""
