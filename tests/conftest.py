"""Shared fixtures: seeding, real-data location."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from medtoken.utils import deprecation

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    """Seed torch, and use one thread: tiny tensors gain nothing from two, and oversubscribed
    cores (a busy CI machine) make multi-threaded tiny ops several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def shared_dataset(name: str) -> Path:
    """Path of a dataset under ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real data not available: {path} does not exist")
    return path


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def deprecations(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], list[str]]]:
    """Forget the deprecations already warned about; call the result for those logged since.

    The handler sits on the ``medtoken.deprecation`` logger itself, so the CLI's
    ``logging.basicConfig(force=True)`` (which replaces the root handlers) does not remove it.
    """
    monkeypatch.setattr(deprecation, "_WARNED", set())
    records, logger = _Records(), logging.getLogger(deprecation.log.name)
    logger.addHandler(records)
    try:
        yield lambda: list(records.messages)
    finally:
        logger.removeHandler(records)
