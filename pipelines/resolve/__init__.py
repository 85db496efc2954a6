"""Entity resolution: Splink models per party type, prediction, clustering, evaluation, charts.

Public surface (everything else is internal):
- `train_models(records_path, seed, models_dir)`: `ucv train`, writes versioned model JSON.
- `predict_and_cluster(run, models)`: `ucv link`, writes resolved/match_pairs, clusters, summary.
- `evaluate(clusters_path, pairs_path, truth_dir)`: `ucv evaluate`, metrics vs ground truth.
- `write_charts(run)`: Splink charts into the run's report folder.
- `load_linker(party_type, records)`: the trained model over stored records, for real-time use.
"""

from typing import TYPE_CHECKING

from pipelines._lazy import lazy_attributes

# Eager: `evaluate` shares its module's name, and importing the module would shadow a lazy name.
from pipelines.resolve.evaluate import evaluate

if TYPE_CHECKING:  # what type checkers and editors see; at run time names load on use
    from pipelines.resolve.charts import write_charts
    from pipelines.resolve.evaluate import evaluate, evaluation_table
    from pipelines.resolve.predict import ResolveResult, load_model, predict_and_cluster
    from pipelines.resolve.realtime import PartyLinker, load_linker
    from pipelines.resolve.training import train_models

__all__ = ["PartyLinker", "ResolveResult", "evaluate", "evaluation_table", "load_linker", "load_model", "predict_and_cluster", "train_models", "write_charts"]

__getattr__ = lazy_attributes(__name__, {
    "pipelines.resolve.charts": ["write_charts"],
    "pipelines.resolve.evaluate": ["evaluation_table"],
    "pipelines.resolve.predict": ["ResolveResult", "load_model", "predict_and_cluster"],
    "pipelines.resolve.realtime": ["PartyLinker", "load_linker"],
    "pipelines.resolve.training": ["train_models"],
})
