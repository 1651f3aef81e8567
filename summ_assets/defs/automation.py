"""New data -> retrain: a sensor over the data folders, a nightly stale-only schedule, automation
conditions on the model half, and the jobs they launch."""

import dagster as dg

from summ_assets.core import labels
from summ_assets.defs import comparison, ingest
from summ_assets.defs.common import DOCUMENTS, GROUPS, ON_DEMAND_TAG
from summ_assets.defs.orphans import clean_orphans, free_slots_of_finished_runs
from summ_assets.defs.partitions import plan_partitions
from summ_assets.defs.resources import SummSettings

# the per-document assets (the partitioned ones of the ingest group) and everything else
INGEST = dg.AssetSelection.assets(
    *[
        a
        for a in dg.load_assets_from_modules([ingest, comparison])
        if getattr(a, "partitions_def", None) is not None
    ]
)
# the on-demand assets (the full evaluation) run only when asked for
MODEL_HALF = dg.AssetSelection.groups(*GROUPS) - INGEST - dg.AssetSelection.tag(ON_DEMAND_TAG, "true")

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


def labels_hash(settings: SummSettings) -> str:
    """Hash of every labels file (what `summary_dataset` reads besides the manifest)."""
    return labels.labels_hash(settings.data_root / "labels")


def _will_run(instance: dg.DagsterInstance, run_key: str) -> bool:
    """Whether a request with this run key is still to run or running: the daemon launches a run key
    once, so one whose run has finished (a bad file that failed) will not run again."""
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/run_key": run_key}), limit=1)
    return not runs or not runs[0].is_finished


@dg.sensor(
    jobs=[ingest_job, train_job],  # a RunRequest may only name a job the sensor targets
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Registers one partition per new document, drops partitions whose file is gone (artifacts "
    "are kept), requests ingestion of new or changed documents (file hash vs the partition's data "
    "version), and re-runs corpus_manifest + summary_dataset when only the labels changed.",
)
def new_data_sensor(
    context: dg.SensorEvaluationContext, settings: SummSettings
) -> dg.SensorResult | dg.SkipReason:
    instance = context.instance
    sync = plan_partitions(instance, settings.data_root, settings.get_profile().data.pool_documents)
    add, drop = sync.add, sync.drop
    requests = [
        dg.RunRequest(
            # unique per change: a file changed back to an earlier content must not reuse that
            # content's (finished) run key, or the daemon would skip it
            run_key=f"{c.partition}:{c.sha}:after-{c.since}",
            job_name=ingest_job.name,
            partition_key=c.partition,
            tags={"summ_assets/trigger": "new_data_sensor"},
        )
        for c in sync.changed
    ]
    lab = labels_hash(settings)
    cursor = lab
    # the latest summary_dataset materialization: the labels it read, and its storage id for the run key
    (last,) = instance.fetch_materializations(dg.AssetKey("summary_dataset"), limit=1).records or [None]
    seen = last.asset_materialization.metadata.get("labels_hash") if last else None
    if seen is not None and seen.value != lab and context.cursor != lab:
        if add or drop or any(_will_run(instance, r.run_key) for r in requests):
            # Documents are still being ingested: that ingestion reaches summary_dataset through the
            # manifest (model_half_automation), and that run reads these labels. A labels run now would
            # pair them with a manifest that lacks the new documents (strict labels fail: 'no such
            # document') and build summary_dataset twice. Keep the old cursor: a later tick still
            # requests the labels run if the chain did not pick them up (labels_hash stays behind).
            # A file whose ingestion already failed does not hold the labels back.
            cursor = context.cursor
        else:
            requests.append(
                dg.RunRequest(
                    run_key=f"labels:{lab}:after-{last.storage_id}",
                    job_name=train_job.name,
                    # the manifest first: it may not have caught up with an ingest that just finished
                    asset_selection=[dg.AssetKey("corpus_manifest"), dg.AssetKey("summary_dataset")],
                    tags={"summ_assets/trigger": "new_data_sensor"},
                )
            )
    dyn = sync.dynamic_partition_requests()
    if not (requests or dyn):
        return dg.SkipReason("no new, changed or removed documents; labels unchanged")
    context.log.info(f"added {add}, dropped {drop}, runs requested: {[r.run_key for r in requests]}")
    return dg.SensorResult(run_requests=requests, dynamic_partitions_requests=dyn, cursor=cursor)


@dg.schedule(
    job=train_job,
    cron_schedule="0 3 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Nightly: materialize only the stale or missing assets of the model half.",
)
def nightly_stale_retrain(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    return dg.RunRequest(stale_assets_only=True)


automation_sensor = dg.AutomationConditionSensorDefinition(
    "model_half_automation",
    target=MODEL_HALF,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)

# the same interval as `run_monitoring.poll_interval_seconds` in the shipped dagster.yaml: a run whose
# worker died has its pool slots back within this many seconds (plus one daemon tick) under `make ui`
DEAD_RUN_CHECK_S = 30


@dg.sensor(
    minimum_interval_seconds=DEAD_RUN_CHECK_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Cleans up runs whose worker process died (SIGKILL, OOM kill, power loss): marks them "
    "failed and frees their pool slots, which Dagster's run monitoring does not do for the default run "
    "launcher; and frees slots that finished runs still hold. The same cleanup `summ-assets refresh` "
    "runs before it launches anything.",
)
def dead_run_cleanup(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    cleaned = clean_orphans(context.instance)
    for orphan in cleaned:
        context.log.warning(orphan.line())
    freed = free_slots_of_finished_runs(context.instance)
    for run_id in freed:
        context.log.warning(f"freed the pool slots still held by finished run {run_id[:8]}")
    if not (cleaned or freed):
        return dg.SkipReason("every STARTING/STARTED run has a live worker; no finished run holds a slot")
    return dg.SkipReason(
        f"cleaned up {len(cleaned)} run(s) {[o.run_id[:8] for o in cleaned]}; freed the slots of "
        f"{len(freed)} finished run(s) {[r[:8] for r in freed]}"
    )
