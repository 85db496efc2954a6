"""How far two clusterings of the same records agree, counted set-based in DuckDB.

The benchmarks compare clusterings (incremental against full night, Spark against DuckDB, models
trained on either engine): pairs of records sharing a cluster in A, in B and in both, counted per
cluster (n·(n−1)/2), never enumerated — at 1M records the pairs do not fit in Python sets cheaply.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.sql import quote_path


def cluster_agreement(con, clusters_a: Path, clusters_b: Path,
                      labels: tuple[str, str] = ("a", "b")) -> dict[str, Any]:
    """clustered_pairs_<label a>, clustered_pairs_<label b>, clustered_pairs_both and
    pairwise_agreement = both / either (1.0: the same clusters), over the records in both files."""
    a, b = quote_path(clusters_a), quote_path(clusters_b)
    in_a, in_b, both = con.execute(f"""
        WITH j AS (SELECT x.cluster_id AS ca, y.cluster_id AS cb FROM read_parquet({a}) x
                   JOIN read_parquet({b}) y USING (source_record_id))
        SELECT (SELECT sum(n * (n - 1) // 2) FROM (SELECT count(*) AS n FROM j GROUP BY ca)),
               (SELECT sum(n * (n - 1) // 2) FROM (SELECT count(*) AS n FROM j GROUP BY cb)),
               (SELECT sum(n * (n - 1) // 2) FROM (SELECT count(*) AS n FROM j GROUP BY ca, cb))
        """).fetchall()[0]
    in_a, in_b, both = int(in_a or 0), int(in_b or 0), int(both or 0)
    either = in_a + in_b - both
    first, second = labels
    return {f"clustered_pairs_{first}": in_a, f"clustered_pairs_{second}": in_b,
            "clustered_pairs_both": both,
            "pairwise_agreement": round(both / either, 6) if either else 1.0}
