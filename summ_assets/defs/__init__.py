"""The Dagster layer: thin asset bodies that call `summ_assets.core`."""
