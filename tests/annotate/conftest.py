"""Fixtures of the annotate tests."""

from tests.annotate.helpers import few_photos  # noqa: F401 - a fixture, used by name
