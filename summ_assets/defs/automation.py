"""New data -> retrain: a sensor over the data folders, a nightly stale-only schedule, automation
conditions on the model half, and the jobs they launch."""

import json

import dagster as dg

from summ_assets.defs.common import DOCUMENTS
from summ_assets.defs.resources import SummSettings

INGEST = dg.AssetSelection.assets("raw_documents", "document_sections")
MODEL_HALF = dg.AssetSelection.groups("models", "ingest", "teacher", "student", "evaluation") - INGEST

ingest_job = dg.define_asset_job("ingest_documents", selection=INGEST, partitions_def=DOCUMENTS)
train_job = dg.define_asset_job("train_and_evaluate", selection=MODEL_HALF)

# Run when an upstream's *data version* changed (not merely re-materialized), when code changed, or when
# missing; do not wait for every document partition (a bad file must not block the corpus forever).
MODEL_CONDITION = (
    dg.AutomationCondition.eager()
    .replace("newly_updated", dg.AutomationCondition.data_version_changed())
    .without(~dg.AutomationCondition.any_deps_missing())
    | (dg.AutomationCondition.code_version_changed() & ~dg.AutomationCondition.in_progress())
).with_label("data_or_code_changed")


def _snapshot(settings: SummSettings) -> dict[str, str]:
    """{doc id or labels file: sha256} for everything the graph reads from the data folder."""
    from summ_assets.core.artifacts import sha256_file
    from summ_assets.core.documents import discover

    snap = {}
    root = settings.data_root
    for doc_id in discover(root).values():
        p = root / doc_id
        if p.is_file():
            snap[doc_id] = sha256_file(p)
    labels = root / "labels"
    if labels.is_dir():
        for p in sorted(labels.rglob("*.jsonl")):
            snap[p.relative_to(root).as_posix()] = sha256_file(p)
    return snap


@dg.sensor(
    job=ingest_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Registers one partition per new document, drops partitions whose file is gone (artifacts "
    "are kept), and requests ingestion of new/changed documents; labels changes re-run the model half.",
)
def new_data_sensor(context: dg.SensorEvaluationContext, settings: SummSettings):
    from summ_assets.core.documents import discover, partition_key

    before = json.loads(context.cursor) if context.cursor else {}
    now = _snapshot(settings)
    current = discover(settings.data_root)
    known = set(context.instance.get_dynamic_partitions(DOCUMENTS.name))
    add = sorted(set(current) - known)
    drop = sorted(known - set(current))
    changed_docs = sorted(d for d in current.values() if before.get(d) != now.get(d))
    labels_changed = any(
        k.startswith("labels/") and before.get(k) != now.get(k) for k in set(now) | set(before)
    )
    requests = [
        dg.RunRequest(run_key=f"{partition_key(d)}:{now[d][:12]}", partition_key=partition_key(d))
        for d in changed_docs
    ]
    if labels_changed and not changed_docs:
        requests.append(
            dg.RunRequest(
                run_key=f"labels:{json.dumps(sorted(now.items()))[:0]}{len(now)}",
                job_name=train_job.name,
                stale_assets_only=True,
            )
        )
    dyn = []
    if add:
        dyn.append(DOCUMENTS.build_add_request(add))
    if drop:
        dyn.append(DOCUMENTS.build_delete_request(drop))
    if not (requests or dyn):
        return dg.SkipReason("no new, changed or removed documents or labels")
    context.log.info(f"added {add}, dropped {drop}, changed {changed_docs}, labels changed: {labels_changed}")
    return dg.SensorResult(run_requests=requests, dynamic_partitions_requests=dyn, cursor=json.dumps(now))


@dg.schedule(
    job=train_job,
    cron_schedule="0 3 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Nightly: materialize only the stale or missing assets of the model half.",
)
def nightly_stale_retrain(context: dg.ScheduleEvaluationContext):
    return dg.RunRequest(stale_assets_only=True)


automation_sensor = dg.AutomationConditionSensorDefinition(
    "model_half_automation",
    target=MODEL_HALF,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)
