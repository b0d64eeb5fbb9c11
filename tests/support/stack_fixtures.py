"""One way to give tests a stack of their own and the REST client on its edge: a pair of
fixtures, so a module (or conftest) writes `stack, api = stack_and_api(scope="module", ...)`."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal

import pytest

from tests.support.clients import Api
from tests.support.stack import Stack

StackFactory = Callable[..., AbstractAsyncContextManager[Stack]]


def stack_and_api(
    *,
    scope: Literal["session", "package", "module"] = "module",
    stack: str = "stack",
    api: str = "api",
    **overrides: Any,
) -> tuple[Any, Any]:
    """Two fixtures: `stack` (named as given) runs `stack_factory(**overrides)` once per `scope`,
    and `api` is a fresh REST client on that stack's edge for each test."""

    @pytest.fixture(scope=scope, name=stack)
    async def _stack(stack_factory: StackFactory) -> AsyncIterator[Stack]:
        async with stack_factory(**overrides) as running:
            yield running

    async def _api(**fixtures: Stack) -> AsyncIterator[Api]:
        async with Api(fixtures[stack].edge_url) as client:
            yield client

    # pytest reads a fixture's dependencies from its signature: this one depends on `stack`.
    _api.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(stack, inspect.Parameter.KEYWORD_ONLY, annotation=Stack)]
    )
    return _stack, pytest.fixture(name=api)(_api)
