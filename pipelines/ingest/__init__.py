"""Ingest: landed exports -> raw -> accepted / quarantine -> staged canonical source records.

Source systems are configuration: one mapping per source in `schemas/sources/<system>.yaml`
(format in docs/mapping_format.md) and one Great Expectations suite in `expectations/`.
"""

from typing import TYPE_CHECKING

from pipelines._lazy import lazy_attributes
from pipelines.ingest.errors import AccountingError, MappingError, SourceRejected

if TYPE_CHECKING:  # what type checkers see; at run time the names load on first use (ucv --help)
    from pipelines.ingest.extract import ExtractResult, extract_source
    from pipelines.ingest.mapping import SourceMapping, load_mapping, load_mappings
    from pipelines.ingest.run import IngestSummary, SourceCounts, combine_staged, ingest
    from pipelines.ingest.validate import ValidationResult, validate_source

__getattr__ = lazy_attributes(__name__, {
    "pipelines.ingest.extract": ["ExtractResult", "extract_source"],
    "pipelines.ingest.mapping": ["SourceMapping", "load_mapping", "load_mappings"],
    "pipelines.ingest.run": ["IngestSummary", "SourceCounts", "combine_staged", "ingest"],
    "pipelines.ingest.validate": ["ValidationResult", "validate_source"],
})


def standardize_source(mapping, run):
    """accepted/<source>.parquet -> staged/<source>.parquet (see pipelines.standardize.records)."""
    from pipelines.standardize.records import standardize_source as standardize

    return standardize(mapping, run)


def standardize_frame(mapping, df, run_id):
    """Raw source-shaped rows -> canonical rows, the batch code path (real-time resolution)."""
    from pipelines.standardize.records import standardize_frame as standardize

    return standardize(mapping, df, run_id)


__all__ = [
    "AccountingError", "ExtractResult", "IngestSummary", "MappingError", "SourceCounts",
    "SourceMapping", "SourceRejected", "ValidationResult", "combine_staged", "extract_source",
    "ingest", "load_mapping", "load_mappings", "standardize_frame", "standardize_source",
    "validate_source",
]
