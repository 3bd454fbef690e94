"""Shared test helpers."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime

import pytest

from connector_core.catalog import Catalog, load_default_catalog


class CountingIds:
    """Deterministic ids: easy to read in failures, unique per test."""

    def __init__(self, prefix: str = "id") -> None:
        self._n = itertools.count(1)
        self._prefix = prefix

    def new_id(self) -> str:
        return f"{self._prefix}{next(self._n):06d}"

    def secret_token(self, nbytes: int = 32) -> str:
        return f"tok{next(self._n):06d}" + "x" * nbytes


class SeededRandom:
    def __init__(self, seed: int = 7) -> None:
        self._rng = random.Random(seed)

    def random(self) -> float:
        return self._rng.random()


@pytest.fixture
def catalog() -> Catalog:
    return load_default_catalog()


@pytest.fixture
def t0() -> datetime:
    return datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
