"""``[[feature_views]]`` is checked at start: each mistake is refused with a message naming the setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from modelwire.errors import ConfigurationError
from modelwire.features.views import FeatureViews
from modelwire.settings import Settings

GOOD: dict[str, Any] = {
    "name": "user_stats",
    "entities": ["user_id"],
    "ttl_s": 86400,
    "features": {"avg_rating": "float", "n_reviews": "int"},
}


def test_the_issues_toml_shape_loads(tmp_path: Path) -> None:
    config = tmp_path / "modelwire.toml"
    config.write_text(
        """
[[feature_views]]
name = "user_stats"
entities = ["user_id"]
ttl_s = 86400
features = { avg_rating = "float", n_reviews = "int" }
source = { url = "amqp://guest:guest@127.0.0.1:5672/", queue = "features.user_stats" }  # optional
"""
    )
    settings = Settings(config=config)
    (view,) = settings.feature_views
    assert view.features == {"avg_rating": "float", "n_reviews": "int"}
    assert view.source is not None
    assert (view.source.kind, view.source.queue, view.source.dead_letter_name) == (
        "rabbitmq",
        "features.user_stats",
        "features.user_stats.dlq",
    )
    assert view.source.url == "amqp://127.0.0.1:5672/"  # the password is kept apart, as a secret
    assert view.source.secret() == "guest"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"features": {"x": "flaot"}}, "feature_views 'user_stats': feature 'x' has unknown type 'flaot'"),
        ({"entities": []}, "entities must name at least one entity key"),
        ({"entities": ["user id"]}, "'user id' is not a valid entity or feature name"),
        ({"entities": ["avg_rating"]}, "is both an entity key and a feature"),
        ({"name": "user-stats"}, "feature_views name 'user-stats'"),
        ({"ttl_s": 0}, "ttl_s"),
        ({"features": {}}, "features must define at least one feature"),
        ({"source": {"url": "mqtt://h", "queue": "q"}}, "broker URL 'mqtt://h' has no known scheme"),
    ],
)
def test_a_bad_view_is_refused_naming_the_setting(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match="feature_views") as caught:
        Settings(feature_views=[{**GOOD, **change}])
    assert message in str(caught.value)


def test_a_view_defined_twice_is_refused() -> None:
    with pytest.raises(ValidationError, match="feature_views: the name 'user_stats' is defined twice"):
        Settings(feature_views=[GOOD, GOOD])


def test_a_model_asking_for_an_undefined_feature_is_refused_naming_it() -> None:
    views = FeatureViews.from_settings(Settings(feature_views=[GOOD]).feature_views)
    views.check_model("churn", ["user_stats:avg_rating"])
    with pytest.raises(
        ConfigurationError, match=r"model 'churn' declares features .* no feature 'avg' in view"
    ):
        views.check_model("churn", ["user_stats:avg"])
    with pytest.raises(ConfigurationError, match="no view 'orders'"):
        views.check_model("churn", ["orders:total"])
