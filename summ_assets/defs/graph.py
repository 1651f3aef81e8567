"""Facts about the asset graph, read from the graph itself (never a hand-kept list that can drift)."""

import graphlib
from collections.abc import Iterable

import dagster as dg

from summ_assets.defs.common import GPU_POOL, MODELS_GROUP, ON_DEMAND_TAG


def _key(asset: dg.AssetsDefinition) -> str:
    return asset.key.to_user_string()


def parents(assets: Iterable[dg.AssetsDefinition]) -> dict[str, set[str]]:
    """Each asset key -> the keys of the assets it depends on (public `AssetsDefinition` API only)."""
    out: dict[str, set[str]] = {}
    for a in assets:
        for key in a.keys:
            deps = a.asset_deps.get(key, set())
            out.setdefault(key.to_user_string(), set()).update(d.to_user_string() for d in deps)
    return out


def toposorted(assets: Iterable[dg.AssetsDefinition]) -> tuple[str, ...]:
    """Every asset key, upstream first (ties in name order, so the order is stable)."""
    ups = parents(list(assets))
    sorter = graphlib.TopologicalSorter({k: sorted(v) for k, v in sorted(ups.items())})
    sorter.prepare()
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        order += ready
        sorter.done(*ready)
    return tuple(k for k in order if k in ups)


def heavy_steps(assets: Iterable[dg.AssetsDefinition]) -> tuple[str, ...]:
    """Keys of the assets whose step runs in pool `gpu` (GPU limits, one at a time), sorted."""
    return tuple(sorted(_key(a) for a in assets if a.op.pool == GPU_POOL))


def on_demand(assets: Iterable[dg.AssetsDefinition]) -> tuple[str, ...]:
    """Keys of the assets tagged on-demand (`summ-assets eval-full` materializes them; automation and
    `make demo` leave them alone), sorted."""
    return tuple(sorted(_key(a) for a in assets if next(iter(a.specs)).tags.get(ON_DEMAND_TAG) == "true"))


def model_half(assets: Iterable[dg.AssetsDefinition]) -> tuple[str, ...]:
    """The unpartitioned assets downstream of the documents (not the base models), in topological
    order: what `summ-assets refresh` walks after ingestion, and what the model-half automation
    condition applies to."""
    assets = list(assets)
    keep = {
        _key(a)
        for a in assets
        if a.partitions_def is None
        and next(iter(a.specs)).group_name != MODELS_GROUP
        and _key(a) not in on_demand(assets)
    }
    return tuple(k for k in toposorted(assets) if k in keep)
