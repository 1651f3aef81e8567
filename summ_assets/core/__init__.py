"""Plain-Python core of summ-assets: no Dagster imports, unit-tested on its own."""
