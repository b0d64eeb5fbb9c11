"""CPU seconds and peak memory of the stack's processes while a phase runs.

A group of processes is either a fixed list of pids (the services) or every descendant of one
root (PostgreSQL: the postmaster and all its backends and helpers, rescanned at each sample so a
backend born during the phase counts from zero). The PostgreSQL and Redis processes are found
from the servers themselves (`pg_backend_pid()`'s parent, `INFO server`'s process_id), never by
name: on a shared machine other servers run too."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import psutil
import psycopg
import redis.asyncio as aioredis


@dataclass
class _Tracked:
    process: psutil.Process
    cpu_start: float
    cpu_end: float = 0.0
    peak_rss: int = 0

    @property
    def cpu(self) -> float:
        return max(0.0, self.cpu_end - self.cpu_start)


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


@dataclass
class ResourceMonitor:
    """Samples every `interval` seconds between start() and stop(). `trees` name groups whose
    members are the root pid and all its descendants."""

    pids: dict[str, list[int]]
    interval: float = 0.25
    trees: frozenset[str] = frozenset({"postgres"})
    _tracked: dict[str, dict[int, _Tracked]] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        for name, pids in self.pids.items():
            tracked: dict[int, _Tracked] = {}
            for process in self._members(name, pids):
                with contextlib.suppress(psutil.Error):
                    tracked[process.pid] = _Tracked(process, _cpu(process))
            self._tracked[name] = tracked
        self._task = asyncio.create_task(self._sample())

    def _members(self, name: str, pids: list[int]) -> list[psutil.Process]:
        members = []
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(pid)
                members.append(root)
                if name in self.trees:
                    members.extend(root.children(recursive=True))
        return members

    async def _sample(self) -> None:
        while True:
            self._read()
            await asyncio.sleep(self.interval)

    def _read(self) -> None:
        for name, tracked in self._tracked.items():
            if name in self.trees:
                for process in self._members(name, self.pids[name]):
                    if process.pid not in tracked:  # born during the phase: all its CPU counts
                        tracked[process.pid] = _Tracked(process, 0.0)
            for item in tracked.values():
                with contextlib.suppress(psutil.Error):
                    item.cpu_end = _cpu(item.process)
                    item.peak_rss = max(item.peak_rss, item.process.memory_info().rss)

    async def stop(self) -> dict[str, dict[str, float]]:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._read()
        report = {}
        for name, tracked in self._tracked.items():
            if not tracked:
                continue
            report[name] = {
                "cpu_s": round(sum(t.cpu for t in tracked.values()), 3),
                "peak_rss_mb": round(sum(t.peak_rss for t in tracked.values()) / 2**20, 1),
                "processes": len(tracked),
            }
        return report


async def postgres_pids(database_url: str) -> list[int]:
    """The postmaster of the server `database_url` names (the parent of our own backend); the
    monitor adds its descendants. Empty when the server is not on this machine."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        row = await (await conn.execute("SELECT pg_backend_pid()")).fetchone()
        assert row is not None
        # While the connection is open: once it closes, the backend exits and its parent is
        # gone with it (the table then showed no PostgreSQL row in about one run in three).
        with contextlib.suppress(psutil.Error):
            parent = psutil.Process(int(row[0])).parent()
            if parent is not None:
                return [parent.pid]
    return []


async def redis_pid(redis_url: str) -> list[int]:
    """The Redis server process `redis_url` names, when it runs on this machine."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        info = await client.info("server")
    finally:
        await client.aclose()
    pid = int(info.get("process_id", 0))
    return [pid] if pid and psutil.pid_exists(pid) else []
