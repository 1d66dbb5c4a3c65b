"""Fixtures of the annotate tests."""

import pytest

from tests.annotate.helpers import few_photos  # noqa: F401 - a fixture, used by name


@pytest.fixture()
def gemini_replay_server():
    """The loopback replay server answering each sample photo with its reference at once (`first_answer="reference"`):
    these tests check that annotate stores what the API answered; revising the drafts is tested on its own."""
    from poemlib.offline.gemini import GeminiServer

    with GeminiServer(mode="replay", first_answer="reference") as server:
        yield server
