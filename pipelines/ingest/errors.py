"""Errors of the ingest stage: each says which file, key, column and rule is at fault."""

from __future__ import annotations


class MappingError(ValueError):
    """A source mapping (schemas/sources/<system>.yaml) or its expectation suite is invalid."""

    def __init__(self, file: str, key: str, problem: str):
        self.file, self.key, self.problem = file, key, problem
        super().__init__(f"{file}: {key}: {problem}")


class SourceRejected(RuntimeError):
    """A run-level rule failed for a source: nothing of this run may be published."""

    def __init__(self, source: str, file: str | None, column: str | None, rule: str, detail: str):
        self.source, self.file, self.column, self.rule, self.detail = source, file, column, rule, detail
        where = f"source {source!r}, file {file or '-'}, column {column or '-'}"
        super().__init__(f"{where}: rule {rule} failed: {detail}")


class AccountingError(RuntimeError):
    """Rows read did not equal rows accepted + rows quarantined: a row was lost or duplicated."""
