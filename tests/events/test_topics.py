"""Topic names and patterns: which are accepted, how a pattern matches, and no line break ever passes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelwire.errors import InvalidInputError
from modelwire.events.topics import MAX_TOPICS, expand_families, matches, parse_topics, validate_topic


@pytest.mark.parametrize(
    "topic", ["metrics", "models", "server", "jobs/abc-1", "jobs/a.b:c_d", "jobs/*", "*"]
)
def test_known_topics_and_patterns_are_accepted(topic: str) -> None:
    assert validate_topic(topic) == topic


@pytest.mark.parametrize(
    "topic",
    [
        "",
        "bogus",
        "Metrics",
        "jobs",
        "jobs/",
        "jobs/a b",
        "jobs/a/b",
        "jobs/" + "x" * 129,
        "metrics\n",
        "metrics\r\nid: 1",
        "models/*",
        " metrics",
    ],
)
def test_unknown_topics_are_refused_with_the_field(topic: str) -> None:
    with pytest.raises(InvalidInputError) as refused:
        validate_topic(topic)
    assert refused.value.field == "topic"
    assert "metrics, models, server" in refused.value.message


def test_a_non_string_topic_is_refused() -> None:
    with pytest.raises(InvalidInputError):
        validate_topic(42)  # type: ignore[arg-type]


@given(
    st.sampled_from(["metrics", "jobs/1", "jobs/*", "*", ""]),
    st.sampled_from(["\n", "\r", "\r\n", "\x00"]),
    st.text(max_size=20),
    st.booleans(),
)
def test_no_topic_with_a_line_break_or_nul_validates(valid: str, brk: str, tail: str, front: bool) -> None:
    topic = brk + valid + tail if front else valid + brk + tail
    with pytest.raises(InvalidInputError):
        validate_topic(topic)


def test_parse_topics_from_a_comma_separated_string_or_a_list() -> None:
    assert parse_topics(" metrics, models ,,jobs/7 ") == {"metrics", "models", "jobs/7"}
    assert parse_topics(["server", "server", "*"]) == {"server", "*"}


@pytest.mark.parametrize("topics", ["", " , ", []])
def test_parse_topics_needs_at_least_one(topics: str | list[str]) -> None:
    with pytest.raises(InvalidInputError) as refused:
        parse_topics(topics)
    assert refused.value.field == "topics"


def test_parse_topics_is_bounded() -> None:
    parse_topics([f"jobs/{i}" for i in range(MAX_TOPICS)])
    with pytest.raises(InvalidInputError) as refused:
        parse_topics([f"jobs/{i}" for i in range(MAX_TOPICS + 1)])
    assert str(MAX_TOPICS) in refused.value.message


def test_parse_topics_refuses_the_whole_list_for_one_bad_topic() -> None:
    with pytest.raises(InvalidInputError):
        parse_topics("metrics,nope")


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("metrics", "metrics", True),
        ("metrics", "models", False),
        ("*", "jobs/1", True),
        ("*", "server", True),
        ("jobs/*", "jobs/1", True),
        ("jobs/*", "jobs", False),
        ("jobs/*", "models", False),
        ("jobs/1", "jobs/12", False),
        ("jobs/12", "jobs/12", True),
    ],
)
def test_matches(pattern: str, topic: str, expected: bool) -> None:
    assert matches(pattern, topic) is expected


def test_a_family_named_alone_means_all_of_it_on_the_client_side() -> None:
    assert expand_families(["jobs", "models", "jobs/abc", "*"]) == ["jobs/*", "models", "jobs/abc", "*"]
    assert parse_topics(expand_families(["jobs"])) == {"jobs/*"}
