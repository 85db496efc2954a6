"""Synthetic source exports for an insurer (sales, underwriting, servicing, claims) with ground truth.

`generate_exports` writes the four landing files described in docs/source_exports.md, with realistic
noise, hard cases (truth `kinds`) and hard negatives at the rates of schemas/generator.yaml, and
the truth the evaluator reads. Profiles (schemas/profiles/) shape other populations; `night` > 1
gives the same population days later; `exports.broker` adds a fifth, multi-party export.
"""

from typing import TYPE_CHECKING

from pipelines._lazy import lazy_attributes

if TYPE_CHECKING:  # what type checkers and editors see; at run time names load on use
    from pipelines.generate.config import GeneratorConfig, load_config, records_to_customers
    from pipelines.generate.exports import (
        DEFAULT_EXPORT_DATE,
        EXPORT_FILES,
        GenerationSummary,
        generate_exports,
    )

__all__ = ["DEFAULT_EXPORT_DATE", "EXPORT_FILES", "GenerationSummary", "GeneratorConfig", "generate_exports", "load_config", "records_to_customers"]

__getattr__ = lazy_attributes(__name__, {
    "pipelines.generate.config": ["GeneratorConfig", "load_config", "records_to_customers"],
    "pipelines.generate.exports": ["DEFAULT_EXPORT_DATE", "EXPORT_FILES", "GenerationSummary", "generate_exports"],
})
