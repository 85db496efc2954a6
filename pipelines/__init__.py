"""Unified customer view pipeline.

Every entry point (the `ucv` CLI, Airflow tasks, `make run`) imports this package first, so the
process umask is set here: files holding personal data are never created world-readable
(pipelines/fileio.py, docs/operations.md#security).
"""

from pipelines import fileio as _fileio

_fileio.apply_private_umask()
