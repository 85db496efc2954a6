"""Standardize: map accepted source rows to the canonical record, one standardizer per concern.

`records` assembles the canonical row (DuckDB, Python only over distinct values); `text`,
`names`, `contact`, `addresses` and `organizations` are the per-value standardizers.
"""

__all__ = ["standardize_frame", "standardize_source"]


def __getattr__(name: str):
    # Imported lazily: records depends on pipelines.ingest, which re-exports these two.
    if name in __all__:
        from pipelines.standardize import records

        return getattr(records, name)
    raise AttributeError(name)
