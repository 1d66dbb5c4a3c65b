"""Fixtures for the constraint engine: the real Qwen2.5 vocabulary (qwen.tiktoken) and its token table."""

from __future__ import annotations

import pytest
import torch

from poemlib.constrain import Vocabulary, token_table, vocabulary_from_tiktoken


@pytest.fixture(autouse=True)
def _one_thread():
    """Masks are small tensor ops: one thread is faster, and immune to a busy shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def qwen_vocab() -> Vocabulary:
    """The 151,643 Qwen2.5 BPE ranks plus Qwen's special tokens."""
    return vocabulary_from_tiktoken()


@pytest.fixture(scope="session")
def qwen_table(qwen_vocab: Vocabulary):
    """Token classes of the real vocabulary (pingshui readings)."""
    return token_table(qwen_vocab)
