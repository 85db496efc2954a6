"""Golden stage: survivorship, customer–policy links, 360° profiles, atomic publish, marketing export.

The public surface; internals live in the modules named after what they produce.
"""

from pipelines.golden.accuracy import golden_accuracy
from pipelines.golden.build import GoldenResult, build_golden
from pipelines.golden.dictionary import write_data_dictionary
from pipelines.golden.export import export_marketing
from pipelines.golden.lookup import lookup
from pipelines.golden.publish import WarehouseAuditFailed, current_mirror, publish_warehouse

__all__ = [
    "GoldenResult",
    "WarehouseAuditFailed",
    "build_golden",
    "current_mirror",
    "export_marketing",
    "golden_accuracy",
    "lookup",
    "publish_warehouse",
    "write_data_dictionary",
]
