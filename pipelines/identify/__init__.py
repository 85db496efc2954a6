"""Identify: stable customer IDs across runs, steward overrides, the review queue and real-time lookup.

The public surface; everything else in this package is internal.
"""

from typing import TYPE_CHECKING

from pipelines._lazy import lazy_attributes

if TYPE_CHECKING:  # what type checkers and editors see; at run time names load on use
    from pipelines.identify.assign import IdentifyResult, assign_customer_ids, current_customer_id
    from pipelines.identify.config import IdentifyConfig, load_config
    from pipelines.identify.overrides import (
        Override,
        OverrideReport,
        OverridesInvalid,
        append_override,
        apply_overrides,
        load_overrides,
    )
    from pipelines.identify.realtime import Candidate, RealtimeResolver, resolve_record
    from pipelines.identify.review import build_review_queue
    from pipelines.identify.stable_ids import carry_forward_ids

__all__ = ["Candidate", "IdentifyConfig", "IdentifyResult", "Override", "OverrideReport", "OverridesInvalid", "RealtimeResolver", "append_override", "apply_overrides", "assign_customer_ids", "build_review_queue", "carry_forward_ids", "current_customer_id", "load_config", "load_overrides", "resolve_record"]

__getattr__ = lazy_attributes(__name__, {
    "pipelines.identify.assign": ["IdentifyResult", "assign_customer_ids", "current_customer_id"],
    "pipelines.identify.config": ["IdentifyConfig", "load_config"],
    "pipelines.identify.overrides": ["Override", "OverrideReport", "OverridesInvalid", "append_override", "apply_overrides", "load_overrides"],
    "pipelines.identify.realtime": ["Candidate", "RealtimeResolver", "resolve_record"],
    "pipelines.identify.review": ["build_review_queue"],
    "pipelines.identify.stable_ids": ["carry_forward_ids"],
})
