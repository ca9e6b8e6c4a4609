"""Trainer test fixtures: one MiniLM condition encoder per session, and one torch thread per test.

One thread: the tiny models are far too small to gain from intra-op parallelism, and on a shared 2-core
machine two spinning threads made a 3 s training test take over a minute.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def minilm():
    from trainer.encoders import MiniLMCondition

    return MiniLMCondition("cpu")
