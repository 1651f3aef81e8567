"""What is stale? Dagster's own resolver (the one behind the UI's 'Materialize unsynced') on our graph,
plus the file-content check Dagster cannot do for a materialized source (a changed document)."""

from datetime import datetime, timezone
from typing import Any

import dagster as dg


def resolver(instance: dg.DagsterInstance, assets: list) -> object:
    from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
    from dagster._core.definitions.assets.graph.asset_graph import AssetGraph
    from dagster._core.definitions.data_version import CachingStaleStatusResolver

    graph = AssetGraph.from_assets(assets)
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=datetime.now(timezone.utc), last_event_id=None),
        instance=instance,
        asset_graph=graph,
    )
    return CachingStaleStatusResolver(instance=instance, asset_graph=graph, loading_context=view)


def status_of(res: Any, key: str, partition: str | None = None) -> tuple[str, list[str]]:
    from dagster._core.definitions.data_version import StaleStatus

    st = res.get_status(dg.AssetKey(key), partition)
    if st == StaleStatus.MISSING:
        return "missing", ["never materialized"]
    if st == StaleStatus.STALE:
        causes = res.get_stale_root_causes(dg.AssetKey(key), partition)
        return "stale", [f"{c.category.value.lower()}: {c.reason}" for c in causes] or ["stale"]
    return "fresh", []


def latest_data_version(instance: dg.DagsterInstance, key: str, partition: str | None = None) -> str | None:
    return latest_data_version_record(instance, key, partition)[0]


def latest_data_version_record(
    instance: dg.DagsterInstance, key: str, partition: str | None = None
) -> tuple[str | None, int]:
    """(latest data version, storage id of the event that recorded it); (None, 0) when there is none."""
    from dagster._core.definitions.data_version import extract_data_version_from_entry

    rec = instance.get_latest_data_version_record(dg.AssetKey(key), partition_key=partition)
    if rec is None:
        return None, 0
    dv = extract_data_version_from_entry(rec.event_log_entry)
    return (dv.value if dv is not None else None), rec.storage_id


def stale_plan(
    instance: dg.DagsterInstance, assets: list, keys: list[str]
) -> dict[str, tuple[str, list[str]]]:
    """{key: (status, causes)} for unpartitioned `keys`, with staleness carried to descendants.

    Dagster marks only direct children of a changed asset (its stale causes are not transitive); a
    descendant of a stale or missing asset will run too once its parent's data version moves, so
    the plan reports it as "pending" naming the upstream.
    """
    from summ_assets.defs.graph import parents, toposorted

    res = resolver(instance, assets)
    ups_of = parents(assets)
    plan: dict[str, tuple[str, list[str]]] = {}
    for name in toposorted(assets):
        if name not in keys:
            continue
        st, causes = status_of(res, name)
        if st == "fresh":
            ups = [p for p in ups_of.get(name, ()) if p in plan and plan[p][0] != "fresh"]
            if ups:
                st, causes = "pending", [f"upstream {', '.join(sorted(ups))} will change"]
        plan[name] = (st, causes)
    return plan
