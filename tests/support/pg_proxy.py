"""A PostgreSQL-aware TCP proxy on 127.0.0.1 for fault tests: it reads the client's side of the
wire protocol message by message, so a test can cut the link exactly around a COMMIT.

- `arm("after")`: the next COMMIT of a transaction that sent `marker` is forwarded to the server,
  its reply is awaited and dropped, then both connections are cut: the commit is durable, the
  client sees a lost connection (outcome unknown).
- `arm("before")`: that COMMIT never reaches the server; both connections are cut (rolled back).
- `down()`: every connection is cut and new ones are closed at once (PostgreSQL unreachable);
  `up()` forwards again.

Connect with sslmode=disable and gssencmode=disable (see `url`): the first client message is
then the untyped StartupMessage, every later one a typed message.

`score_service_on(stack, url)` runs one more score_service of a stack against another database
URL (the proxy's), with no relay or purge of its own (the stack's own score_service relays).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

from psycopg.conninfo import conninfo_to_dict, make_conninfo

import score_service.server
from bench.faults.proxy import ProxyServer
from common.auth.verifier import open_verifier
from common.db import open_pool
from common.redis_conn import open_redis
from common.redis_keys import Keys
from common.service import Deps
from score_service.config import PurgeSettings, RelaySettings, Settings
from tests.support.stack import Stack, service_settings

Mode = Literal["after", "before"]
_COMMIT = b"COMMIT\x00"


class _Link:
    def __init__(self, client: asyncio.StreamWriter, server: asyncio.StreamWriter) -> None:
        self.client = client
        self.server = server
        self.marked = False
        self.hold = False
        self.replied = asyncio.Event()

    def cut(self) -> None:
        for writer in (self.client, self.server):
            writer.transport.abort()


class PgProxy(ProxyServer):
    def __init__(self, target_url: str) -> None:
        info = conninfo_to_dict(target_url)
        super().__init__(str(info.get("host", "127.0.0.1")), int(str(info.get("port") or 5432)))
        self._target_url = target_url
        self._links: set[_Link] = set()
        self._armed: list[Mode | None] = []
        self.marker = b""
        self.is_down = False
        # COMMITs cut so far, by mode.
        self.cuts: list[Mode] = []

    @property
    def url(self) -> str:
        return make_conninfo(
            self._target_url,
            host="127.0.0.1",
            port=str(self.port),
            sslmode="disable",
            gssencmode="disable",
        )

    def arm(self, mode: Mode, *, marker: bytes, skip: int = 0) -> None:
        """Cut a COMMIT of a transaction that sent a query containing `marker`: the next one
        after `skip` such COMMITs passed."""
        self.marker = marker
        self._armed.extend([None] * skip + [mode])

    def down(self) -> None:
        self.is_down = True
        for link in list(self._links):
            link.cut()

    def up(self) -> None:
        self.is_down = False

    def _cut_all(self) -> None:
        for link in list(self._links):
            link.cut()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link: _Link | None = None
        try:
            if self.is_down:
                return
            up_reader, up_writer = await asyncio.open_connection(*self._target)
            link = _Link(writer, up_writer)
            self._links.add(link)
            await asyncio.gather(self._upstream(reader, link), self._downstream(up_reader, link))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if link is not None:
                self._links.discard(link)
                link.cut()
            writer.transport.abort()

    async def _upstream(self, reader: asyncio.StreamReader, link: _Link) -> None:
        """Client to server, message by message."""
        head = await reader.readexactly(4)
        (length,) = struct.unpack("!i", head)
        link.server.write(head + await reader.readexactly(length - 4))  # StartupMessage
        while True:
            kind = await reader.readexactly(1)
            head = await reader.readexactly(4)
            (length,) = struct.unpack("!i", head)
            body = await reader.readexactly(length - 4)
            if kind in (b"Q", b"P") and self.marker and self.marker in body:
                link.marked = True
            if (
                kind == b"Q"
                and body == _COMMIT
                and link.marked
                and self._armed
                and await self._cut_commit(link, kind + head + body)
            ):
                return
            if kind == b"Q" and body in (_COMMIT, b"ROLLBACK\x00"):
                link.marked = False
            link.server.write(kind + head + body)
            await link.server.drain()

    async def _cut_commit(self, link: _Link, message: bytes) -> bool:
        """Whether the link was cut (else the COMMIT was let through)."""
        mode = self._armed.pop(0)
        if mode is None:
            return False
        link.hold = True
        if mode == "after":
            link.server.write(message)
            await link.server.drain()
            await asyncio.wait_for(link.replied.wait(), 10)
        self.cuts.append(mode)
        link.cut()
        return True

    async def _downstream(self, reader: asyncio.StreamReader, link: _Link) -> None:
        """Server to client, as it comes (held back once a COMMIT is being cut)."""
        while data := await reader.read(65536):
            if link.hold:
                link.replied.set()
                continue
            link.client.write(data)
            await link.client.drain()


@asynccontextmanager
async def pg_proxy(target_url: str) -> AsyncIterator[PgProxy]:
    proxy = PgProxy(target_url)
    await proxy.start()
    try:
        yield proxy
    finally:
        with contextlib.suppress(Exception):
            await proxy.close()


@asynccontextmanager
async def score_service_on(
    stack: Stack, database_url: str, *, pool_name: str, **overrides: Any
) -> AsyncIterator[int]:
    """One more score_service of `stack` on `database_url` (its pool's application_name is
    `pool_name`); yields its gRPC port. Overrides replace fields of its Settings."""
    base: Settings = service_settings("score", stack.config, 0)
    settings = dataclasses.replace(
        base,
        database=dataclasses.replace(base.database, url=database_url),
        relay=RelaySettings(enabled=False),
        purge=PurgeSettings(enabled=False),
        **overrides,
    )
    redis = open_redis(settings.redis, name=pool_name)
    verifier = await open_verifier(settings.verifier, redis, Keys(stack.config.prefix))
    pool = await open_pool(settings.database, name=pool_name)
    running = await score_service.server.build_server(
        settings, Deps(redis=redis, verifier=verifier, pool=pool)
    )
    try:
        yield running.port
    finally:
        await running.stop(0.5)
        await verifier.aclose()
        await pool.close()
        await redis.aclose()
