"""Fixtures of the AdminService tests: each module a board of its own (the tests reason about
its top 10), and `api` on its edge."""

from __future__ import annotations

from tests.support.stack_fixtures import stack_and_api

stack, api = stack_and_api(scope="module")
