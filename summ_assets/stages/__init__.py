"""Heavy stage bodies that run the same way in-process and on a remote machine through Dagster Pipes.

No dagster import here (a GPU pod needs only `dagster-pipes`): `base` holds what every stage shares,
`teacher` the LoRA teacher and the logit cache, `seqkd` the teacher's summaries of unlabelled
sections. `summ_assets.remote` is the remote entry point (`python -m summ_assets.remote
teacher_logits`); `summ_assets.defs.pipes` is the orchestration side (Pipes clients, the launcher
switch, the launch commands) and `summ_assets.defs.stage_io` turns a stage's result into an output.
"""
