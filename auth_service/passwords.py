"""Password hashing with Argon2id (argon2-cffi). Hashing runs in a worker thread so the event
loop keeps serving while it works."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from auth_service.config import PasswordSettings

MIN_PASSWORD = 8
MAX_PASSWORD = 128


class Passwords:
    def __init__(self, settings: PasswordSettings) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.time_cost,
            memory_cost=settings.memory_kib,
            parallelism=settings.parallelism,
            type=Type.ID,
        )
        # Verified against when the account does not exist, so failures take the same time.
        self._dummy = self._hasher.hash("no-such-account-dummy-password")

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> bool:
        def check() -> bool:
            try:
                return self._hasher.verify(stored or self._dummy, password) and stored is not None
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

        return await asyncio.to_thread(check)

    def needs_rehash(self, stored: str) -> bool:
        return self._hasher.check_needs_rehash(stored)
