"""CPU seconds and peak memory of the stack's processes while a phase runs."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import psutil


@dataclass
class _Tracked:
    process: psutil.Process
    cpu_start: float
    cpu_end: float = 0.0
    peak_rss: int = 0


@dataclass
class ResourceMonitor:
    """Samples every `interval` seconds between start() and stop()."""

    pids: dict[str, list[int]]
    interval: float = 0.25
    _tracked: dict[str, list[_Tracked]] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        for name, pids in self.pids.items():
            tracked = []
            for pid in pids:
                with contextlib.suppress(psutil.Error):
                    process = psutil.Process(pid)
                    times = process.cpu_times()
                    tracked.append(_Tracked(process, times.user + times.system))
            self._tracked[name] = tracked
        self._task = asyncio.create_task(self._sample())

    async def _sample(self) -> None:
        while True:
            self._read()
            await asyncio.sleep(self.interval)

    def _read(self) -> None:
        for tracked in self._tracked.values():
            for item in tracked:
                with contextlib.suppress(psutil.Error):
                    times = item.process.cpu_times()
                    item.cpu_end = times.user + times.system
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
                "cpu_s": round(sum(max(0.0, t.cpu_end - t.cpu_start) for t in tracked), 2),
                "peak_rss_mb": round(sum(t.peak_rss for t in tracked) / 2**20, 1),
            }
        return report


def postgres_pids() -> list[int]:
    """Every PostgreSQL server process on the machine (the benchmark's server is one of them)."""
    pids = []
    for process in psutil.process_iter(["name"]):
        if process.info.get("name") == "postgres":
            pids.append(process.pid)
    return pids


def redis_pid(port: int) -> list[int]:
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(process.info.get("cmdline") or [])
        if "redis-server" in (process.info.get("name") or "") and f":{port}" in cmdline:
            return [process.pid]
        if "redis-server" in cmdline and f"--port {port}" in cmdline:
            return [process.pid]
    return []
