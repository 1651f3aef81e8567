"""Facts about the asset graph, read from the graph itself (never a hand-kept list that can drift)."""

from collections.abc import Iterable

import dagster as dg
from dagster._core.definitions.assets.graph.asset_graph import AssetGraph

from summ_assets.defs.common import GPU_POOL, MODELS_GROUP


def _key(asset: dg.AssetsDefinition) -> str:
    return asset.key.to_user_string()


def heavy_steps(assets: Iterable[dg.AssetsDefinition]) -> tuple[str, ...]:
    """Keys of the assets whose step runs in pool `gpu` (GPU limits, one at a time), sorted."""
    return tuple(sorted(_key(a) for a in assets if a.op.pool == GPU_POOL))


def model_half(assets: Iterable[dg.AssetsDefinition]) -> tuple[str, ...]:
    """The unpartitioned assets downstream of the documents (not the base models), in topological
    order: what `summ-assets refresh` walks after ingestion, and what the model-half automation
    condition applies to."""
    assets = list(assets)
    keep = {
        _key(a) for a in assets if a.partitions_def is None and next(iter(a.specs)).group_name != MODELS_GROUP
    }
    graph = AssetGraph.from_assets(assets)
    return tuple(k.to_user_string() for k in graph.toposorted_asset_keys if k.to_user_string() in keep)
