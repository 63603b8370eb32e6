"""Bodies of the features API, in the shapes a Feast user knows (msgspec structs: they decode requests and
document responses in OpenAPI)."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

__all__ = ["FeatureColumn", "FeatureViewInfo", "FeatureViewList", "OnlineFeaturesRequest"]
__all__ += ["OnlineFeaturesResponse"]
__all__ += ["OnlineFeaturesMetadata", "PushRequest", "PushResponse"]


class PushRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Rows of one view: each holds the entity key(s), some or all features and, optionally,
    ``event_timestamp`` (RFC 3339 or epoch seconds; default: the arrival time)."""

    rows: list[dict[str, Any]]


class PushResponse(msgspec.Struct):
    """Rows written, and rows skipped because a value at least as new was stored (last-write-wins by
    event time: a replayed or late event changes nothing)."""

    view: str
    applied: int
    skipped: int


class OnlineFeaturesRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Feast's ``get-online-features``: ``view:feature`` references and the entity keys as columns."""

    features: list[str]
    entities: dict[str, list[str | int]]
    full_feature_names: bool = False
    """Name the columns ``view__feature`` (needed when two views share a feature name)."""


class OnlineFeaturesMetadata(msgspec.Struct):
    feature_names: list[str]


class FeatureColumn(msgspec.Struct):
    """One name of ``feature_names``: a value, a status and an event time (RFC 3339) per entity."""

    values: list[Any]
    statuses: list[Literal["PRESENT", "NOT_FOUND", "OUTSIDE_MAX_AGE"]]
    event_timestamps: list[str]


class OnlineFeaturesResponse(msgspec.Struct):
    """Column-wise, as Feast answers: the entity key columns first, then each feature asked."""

    metadata: OnlineFeaturesMetadata
    results: list[FeatureColumn]


class FeatureViewInfo(msgspec.Struct):
    name: str
    entities: list[str]
    features: dict[str, str]
    ttl_s: float


class FeatureViewList(msgspec.Struct):
    feature_views: list[FeatureViewInfo]
