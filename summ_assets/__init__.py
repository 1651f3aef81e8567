"""summ-assets: a Dagster asset graph that distills a domain summarizer."""

__version__ = "0.1.0"
