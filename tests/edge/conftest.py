"""Fixtures of the edge tests: the stack's signing key, shared with the auth tests."""

from __future__ import annotations

from tests.auth.conftest import ours

__all__ = ["ours"]
