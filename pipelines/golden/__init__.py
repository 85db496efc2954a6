"""Golden stage: survivorship, customer–policy links, 360° profiles, atomic publish, marketing export.

The public surface; internals live in the modules named after what they produce.
"""

from typing import TYPE_CHECKING

from pipelines._lazy import lazy_attributes

# Eager: `lookup` shares its module's name, and importing the module would shadow a lazy name.
from pipelines.golden.lookup import lookup

if TYPE_CHECKING:  # what type checkers and editors see; at run time names load on use
    from pipelines.golden.accuracy import golden_accuracy
    from pipelines.golden.build import GoldenResult, build_golden
    from pipelines.golden.dictionary import write_data_dictionary
    from pipelines.golden.export import export_marketing
    from pipelines.golden.lookup import lookup
    from pipelines.golden.publish import WarehouseAuditFailed, current_mirror, publish_warehouse

__all__ = ["GoldenResult", "WarehouseAuditFailed", "build_golden", "current_mirror", "export_marketing", "golden_accuracy", "lookup", "publish_warehouse", "write_data_dictionary"]

__getattr__ = lazy_attributes(__name__, {
    "pipelines.golden.accuracy": ["golden_accuracy"],
    "pipelines.golden.build": ["GoldenResult", "build_golden"],
    "pipelines.golden.dictionary": ["write_data_dictionary"],
    "pipelines.golden.export": ["export_marketing"],
    "pipelines.golden.publish": ["WarehouseAuditFailed", "current_mirror", "publish_warehouse"],
})
