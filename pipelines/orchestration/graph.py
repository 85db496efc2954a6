"""The nightly task graph as documented in docs/operations.md, the one place it is written down.

The DAG tests compare the DAG's edges with this list, and `ucv run` with its order.
"""

from __future__ import annotations

import re
from pathlib import Path

from pipelines.settings import PROJECT_ROOT

OPERATIONS_DOC = PROJECT_ROOT / "docs" / "operations.md"


def documented_edges(doc: Path = OPERATIONS_DOC) -> set[tuple[str, str]]:
    """The `upstream >> downstream` lines between the dag-edges markers of the document."""
    text = doc.read_text(encoding="utf-8")
    block = re.search(r"<!-- dag-edges:start -->(.*?)<!-- dag-edges:end -->", text, re.S)
    if block is None:
        raise ValueError(f"{doc} has no <!-- dag-edges:start --> ... end block")
    edges = set(re.findall(r"^(\w+) >> (\w+)$", block.group(1), re.M))
    if not edges:
        raise ValueError(f"the dag-edges block of {doc} lists no edges")
    return edges
