"""Splink on Spark (`backend: spark` in schemas/resolution.yaml): the same model JSON, scored and
clustered by Spark when one machine is not enough.

The split of work: features are computed in DuckDB as for the default backend and handed to Spark
as Parquet; Spark blocks, scores (the heavy, quadratic-in-blocks part) and clusters; the kept pairs
come back as Parquet, so guards, evidence columns and everything downstream are the same code for
both engines. Models are trained and saved in DuckDB's SQL dialect; `model_for_spark` translates
their SQL with sqlglot and maps the three functions whose names differ (Splink's Spark jar UDFs).
Training on Spark (`SparkTraining`) runs Splink's estimation steps there and copies the fitted
parameters back into the DuckDB-dialect settings (`copy_trained_parameters`).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# list-typed columns of the comparison table (features.COLUMN_TYPES, nickname variants)
LIST_COLUMNS = frozenset({"org_name_tokens", "org_name_qualifiers", "given_name_variants",
                          "given_name_pinyin_forms"})

# Splink's Spark similarity jar names these UDFs differently from DuckDB's built-ins
_SPARK_FUNCTION_NAMES = {"jaro_winkler_similarity": "jaro_winkler", "jaro_similarity": "jaro_sim"}

INSTALL_HINT = ("backend 'spark' needs pyspark: run `make setup-spark` (installs the locked "
                "optional extra `spark`, pyspark 4.0.1) and a Java 17 runtime")


class SparkUnavailable(RuntimeError):
    """pyspark or Java is missing: the message says how to install them."""


def to_spark_sql(sql: str) -> str:
    """One SQL condition from DuckDB's dialect to Spark's (identifiers, functions, list overlap)."""
    import sqlglot
    from sqlglot import exp

    tree = sqlglot.parse_one(sql, read="duckdb")

    def is_list(node: exp.Expression) -> bool:
        """A list-typed column of the comparison table (its `_l`/`_r` side)."""
        return (isinstance(node, exp.Column)
                and node.name.rsplit("_", 1)[0] in LIST_COLUMNS)

    def rewrite(node: exp.Expression) -> exp.Expression:
        # DuckDB's len() of a list is Spark's size(); sqlglot reads it as a string length
        if isinstance(node, exp.Length) and is_list(node.this):
            return exp.ArraySize(this=node.this)
        # list_has_all(a, b): every element of b is in a
        if isinstance(node, exp.Anonymous) and node.name.lower() == "list_has_all":
            a, b = node.expressions
            return exp.EQ(this=exp.ArraySize(this=exp.Anonymous(
                this="array_except", expressions=[b, a])), expression=exp.Literal.number(0))
        if isinstance(node, exp.ArrayOverlaps):
            return exp.Anonymous(this="arrays_overlap", expressions=[node.this, node.expression])
        if isinstance(node, exp.JarowinklerSimilarity):
            return exp.Anonymous(this="jaro_winkler",
                                 expressions=[node.this, node.expression])
        if isinstance(node, exp.Anonymous) and node.name.lower() in _SPARK_FUNCTION_NAMES:
            return exp.Anonymous(this=_SPARK_FUNCTION_NAMES[node.name.lower()],
                                 expressions=node.expressions)
        return node

    return tree.transform(rewrite).sql(dialect="spark")


def model_for_spark(model: dict[str, Any]) -> dict[str, Any]:
    """A copy of a saved Splink model with every SQL condition in Spark's dialect."""
    spark_model = json.loads(json.dumps(model))
    for comparison in spark_model["comparisons"]:
        for level in comparison["comparison_levels"]:
            if level["sql_condition"].strip().upper() != "ELSE":
                level["sql_condition"] = to_spark_sql(level["sql_condition"])
    for rule in spark_model.get("blocking_rules_to_generate_predictions", []):
        rule["blocking_rule"] = to_spark_sql(rule["blocking_rule"])
        rule["sql_dialect"] = "spark"
    spark_model["sql_dialect"] = "spark"
    return spark_model


@functools.cache
def spark_session(master: str, driver_memory: str, shuffle_partitions: int, work_dir: str,
                  connect_url: str | None = None):
    """The process's SparkSession (started once: start-up costs ~30 s).

    `master` is `local[N]` for one machine or a cluster URL (spark://, yarn, k8s://); with
    `connect_url` (sc://host:15002) the session is a Spark Connect client instead.
    """
    try:
        from pyspark.sql import SparkSession
        from splink.backends.spark import similarity_jar_location
    except ImportError as exc:  # pyspark is an optional extra
        raise SparkUnavailable(INSTALL_HINT) from exc
    if connect_url:
        return SparkSession.builder.remote(connect_url).getOrCreate()
    builder = (SparkSession.builder.master(master).appName("unified-customer-view")
               .config("spark.jars", similarity_jar_location())
               .config("spark.driver.memory", driver_memory)
               .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
               .config("spark.local.dir", str(Path(work_dir) / "local"))
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false"))
    if master.startswith("local"):
        # a local driver talks to itself only (no port open to the network)
        builder = (builder.config("spark.driver.bindAddress", "127.0.0.1")
                   .config("spark.driver.host", "127.0.0.1"))
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # no Java, or the cluster refused us: say so in one line
        raise SparkUnavailable(f"could not start Spark (master {master}): {exc}. "
                               f"{INSTALL_HINT}") from exc
    spark.sparkContext.setCheckpointDir(str(Path(work_dir) / "checkpoints"))
    spark.sparkContext.setLogLevel("ERROR")  # Spark's WARN lines print whole query plans
    return spark


def spark_work_dir(options: dict[str, Any]) -> Path:
    """Spark's scratch and checkpoint folder (`work_dir`, default UCV_HOME/tmp/spark): on a
    cluster it must be storage the driver and every executor read."""
    from pipelines.settings import data_root

    work_dir = Path(options.get("work_dir") or data_root() / "tmp" / "spark")
    work_dir.mkdir(parents=True, exist_ok=True)
    return work_dir


def spark_api(options: dict[str, Any]):
    """Splink's SparkAPI on the configured session (schemas/resolution.yaml `spark:`)."""
    try:
        from splink.backends.spark import SparkAPI
    except ImportError as exc:
        raise SparkUnavailable(INSTALL_HINT) from exc
    work_dir = spark_work_dir(options)
    master = str(os.environ.get("UCV_SPARK_MASTER") or options.get("master") or "local[2]")
    local = master.startswith("local")
    partitions = int(options.get("shuffle_partitions") or (4 if local else 200))
    session = spark_session(master, str(options.get("driver_memory", "4g")), partitions,
                            str(work_dir),
                            os.environ.get("UCV_SPARK_CONNECT") or options.get("connect_url"))
    # Splink breaks long query plans by writing intermediate tables; in one local JVM keeping
    # them in memory is several times faster, on a cluster Parquet is the robust choice
    lineage = str(options.get("break_lineage_method") or ("persist" if local else "parquet"))
    return SparkAPI(spark_session=session, break_lineage_method=lineage,
                    num_partitions_on_repartition=partitions)


def predict_on_spark(input_parquet: Path, name: str, model: dict[str, Any], review_floor: float,
                     out_dir: Path, options: dict[str, Any]) -> tuple[Path, dict[int, int]]:
    """Block and score one party type's comparison table on Spark.

    Writes the pairs at or above `review_floor` (Splink's predict output: ids, match weight and
    probability, match_key, per-comparison evidence) as a Parquet folder and returns it with the
    number of comparisons per blocking rule (match_key).
    """
    from splink import Linker

    api = spark_api(options)
    frame = api.spark.read.parquet(str(input_parquet))
    linker = Linker(api.register(frame, dataset_display_name=f"input_{name}"),
                    model_for_spark(model), log_level=logging.WARNING)
    blocked = linker.inference.compute_blocked_pairs_for_predict()
    by_rule = {int(row[0]): int(row[1]) for row in blocked.as_spark_dataframe()
               .groupBy("match_key").count().collect()}
    predictions = linker.inference.predict(threshold_match_weight=review_floor,
                                           warning_mode="never")
    out = out_dir / "predictions"
    predictions.as_spark_dataframe().write.mode("overwrite").parquet(str(out))
    return out, by_rule


def cluster_on_spark(nodes_parquet: Path, links_parquet: Path, name: str, match_weight: float,
                     out_dir: Path, options: dict[str, Any]) -> Path:
    """Connected components of the links on Spark (Splink's clustering); one row per node with
    `unique_id, cluster_id` as a Parquet folder."""
    from splink.clustering import cluster_pairwise_predictions_at_threshold

    api = spark_api(options)
    nodes = api.spark.read.parquet(str(nodes_parquet)).select("unique_id")
    links = api.spark.read.parquet(str(links_parquet))
    clusters = cluster_pairwise_predictions_at_threshold(
        nodes, links, api, node_id_column_name="unique_id",
        threshold_match_weight=match_weight)
    out = out_dir / "clusters"
    clusters.as_spark_dataframe().select("unique_id", "cluster_id").write.mode(
        "overwrite").parquet(str(out))
    return out


class SparkTraining:
    """Splink's training steps on Spark for a comparison table built in DuckDB.

    On entry the table is written as Parquet to a scratch folder under the Spark work dir and
    registered with Splink's SparkAPI; `linker(settings)` gives a Spark Linker for one set of
    untrained DuckDB-dialect settings (training may retry with fewer comparisons); `sql` turns a
    DuckDB rule into Spark's dialect for the training calls. The scratch folder is removed on exit.
    """

    sql = staticmethod(to_spark_sql)

    def __init__(self, con, table: str, options: dict[str, Any]) -> None:
        self._con, self._table, self._options = con, table, options
        self._scratch: Path | None = None
        self._input: Any = None

    def __enter__(self) -> SparkTraining:
        from pipelines.sql import quote_literal

        api = spark_api(self._options)  # first: no scratch is left behind when Spark is missing
        # Spark's readers skip files whose names start with '.' or '_'
        self._scratch = Path(tempfile.mkdtemp(prefix=f"{self._table}_",
                                              dir=spark_work_dir(self._options)))
        try:
            part = self._scratch / "input.parquet"
            self._con.execute(f"COPY {self._table} TO {quote_literal(part)} (FORMAT parquet)")
            self._input = api.register(api.spark.read.parquet(str(part)),
                                       dataset_display_name=self._table)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def linker(self, settings: dict[str, Any]):
        """A Spark Linker on the registered table with `settings` (DuckDB dialect) translated."""
        from splink import Linker

        return Linker(self._input, model_for_spark(settings), log_level=logging.WARNING)


_TRAINED_KEYS = ("m_probability", "u_probability")


def copy_trained_parameters(model: dict[str, Any], trained: dict[str, Any]) -> dict[str, Any]:
    """`model` (DuckDB dialect) with the m and u of every level and the prior of `trained` (the
    same settings trained in another dialect), matched by comparison and level position.

    Only the fitted numbers move: SQL, term-frequency settings and labels stay `model`'s, so a
    model trained on Spark is saved in DuckDB's dialect like any other. Raises ValueError when
    the two do not have the same comparisons and levels (then positions would pair wrong levels).
    """
    out = json.loads(json.dumps(model))
    if len(out["comparisons"]) != len(trained["comparisons"]):
        raise ValueError(f"trained model has {len(trained['comparisons'])} comparisons, the "
                         f"settings {len(out['comparisons'])}")
    for comparison, fitted in zip(out["comparisons"], trained["comparisons"], strict=True):
        name = comparison["output_column_name"]
        levels, fitted_levels = comparison["comparison_levels"], fitted["comparison_levels"]
        if fitted["output_column_name"] != name or len(levels) != len(fitted_levels):
            raise ValueError(f"trained comparison {fitted['output_column_name']!r} "
                             f"({len(fitted_levels)} levels) does not match {name!r} "
                             f"({len(levels)} levels)")
        for level, fitted_level in zip(levels, fitted_levels, strict=True):
            if level.get("label_for_charts") != fitted_level.get("label_for_charts"):
                raise ValueError(f"{name}: trained level {fitted_level.get('label_for_charts')!r} "
                                 f"is not {level.get('label_for_charts')!r}")
            for key in _TRAINED_KEYS:
                # Splink writes m/u only for levels it trained: an absent key means unestimated
                level.pop(key, None)
                if key in fitted_level:
                    level[key] = fitted_level[key]
    out["probability_two_random_records_match"] = trained["probability_two_random_records_match"]
    return out
