"""Declared argument ranges (``arg_bounds``): one check, by the registry before building and by a
component built directly, each a one-line message naming the argument, its value and its range."""

from __future__ import annotations

import math

import pytest

from contrastive import bounds
from contrastive.errors import InvalidArgumentsError
from contrastive.registry import Registry


@pytest.mark.parametrize(("spec", "words"), [
    ({"min": 1}, "at least 1"), ({"min": 0}, ">= 0"), ({"gt": 0}, "> 0"), ({"max": 1}, "at most 1"),
    ({"lt": 1}, "< 1"), ({"min": 0, "lt": 1}, "in [0, 1)"), ({"gt": 0, "max": 1}, "in (0, 1]"),
    ({"min": 0, "max": 1}, "between 0 and 1"), ({"gt": 0, "lt": 1}, "strictly between 0 and 1"),
    ({"help": "not a bound"}, ""),
])
def test_ranges_in_words(spec, words):
    assert bounds.describe(spec) == words


def test_only_real_numbers_are_bounded_and_nan_is_outside_every_range():
    spec = {"min": 0, "lt": 1}
    assert bounds.within(0, spec) and bounds.within(0.5, spec) and not bounds.within(1, spec)
    assert bounds.within(None, spec) and bounds.within("auto", spec) and bounds.within(True, spec)
    assert not bounds.within(math.nan, spec) and bounds.within(math.nan, {"help": "x"})
    assert bounds.problem(-0.5, spec) == "must be in [0, 1), got -0.5" and bounds.problem(0.5, spec) is None


class Queue:
    """A component declaring the ranges of its arguments."""

    arg_bounds = {"size": {"min": 1}, "momentum": {"min": 0, "lt": 1}}  # noqa: RUF012

    def __init__(self, size: int = 8, momentum: float = 0.9, label: str = "q") -> None:
        bounds.check_arguments("queue", Queue, size=size, momentum=momentum)


def test_the_registry_checks_declared_ranges_before_building():
    """In the words the component itself uses when built directly: one message either way."""
    registry = Registry("queues")
    registry.register("queue", Queue)
    registry.check_args("queue", {"size": 4, "momentum": 0.0, "label": "x"})
    with pytest.raises(InvalidArgumentsError, match=r"^queue: size must be at least 1, got 0$"):
        registry.check_args("queue", {"size": 0})
    with pytest.raises(InvalidArgumentsError, match=r"^queue: momentum must be in \[0, 1\), got 1\.0$"):
        registry.build("queue", momentum=1.0)


def test_a_component_built_directly_checks_types_and_ranges():
    Queue(size=1, momentum=0.5)
    with pytest.raises(InvalidArgumentsError, match=r"^queue: size must be at least 1, got 0$"):
        Queue(size=0)
    with pytest.raises(InvalidArgumentsError, match=r"^queue: size should be int, got 2\.5$"):
        Queue(size=2.5)
    with pytest.raises(InvalidArgumentsError, match=r"^queue: momentum should be float, got '0\.9'$"):
        Queue(momentum="0.9")
