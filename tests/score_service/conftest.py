"""Fixtures of the score tests: one stack of their own for the session (their scores would
otherwise crowd the top 10 other tests watch), and `api` on its edge (overriding the root `api`,
which is on shared_stack)."""

from __future__ import annotations

from tests.support.stack_fixtures import stack_and_api

score_stack, api = stack_and_api(scope="session", stack="score_stack")
