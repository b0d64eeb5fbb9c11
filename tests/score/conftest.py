"""Fixtures of the score tests: one stack of their own for the session (their scores would
otherwise crowd the top 10 other tests watch), and the REST client on it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.conftest import StackFactory
from tests.support.clients import Api
from tests.support.stack import Stack


@pytest.fixture(scope="session")
async def score_stack(stack_factory: StackFactory) -> AsyncIterator[Stack]:
    async with stack_factory() as stack:
        yield stack


@pytest.fixture
async def api(score_stack: Stack) -> AsyncIterator[Api]:
    """The edge of score_stack (this overrides the root `api`, which is on shared_stack)."""
    async with Api(score_stack.edge_url) as client:
        yield client
