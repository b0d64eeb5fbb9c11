"""Smoke test of the embedded path exactly as a new user runs it: `make run` with no database or
Redis configured, one action, one WebSocket update, Ctrl-C, and no process left behind.

Usage: python tools/smoke.py   (run from the repository root; exits non-zero on failure)
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson
import psutil
import websockets

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _exercise(base: str) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        name = f"smoke{secrets.token_hex(4)}"
        reply = await client.post(
            "/api/auth/register", json={"username": name, "password": "smoke-test-password"}
        )
        reply.raise_for_status()
        data = reply.json()["data"]
        token, user_id = data["accessToken"], data["user"]["userId"]
        ws_url = base.replace("http://", "ws://") + f"/ws?token={token}"
        async with websockets.connect(ws_url) as ws:
            ack = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
            assert ack["type"] == "CONNECTION_ACK", ack
            reply = await client.post(
                "/api/actions/complete",
                json={"actionId": "daily-login"},
                headers={"authorization": f"Bearer {token}"},
            )
            assert reply.status_code == 200, reply.text
            deadline = time.monotonic() + 10
            while True:
                message = orjson.loads(
                    await asyncio.wait_for(ws.recv(), deadline - time.monotonic())
                )
                if message["type"] == "LEADERBOARD_UPDATE" and any(
                    e["userId"] == user_id for e in message["data"]["top10"]
                ):
                    break
    print("smoke: registered, completed an action, received the update")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="sbsmoke-") as data_dir:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCOREBOARD_")}
        env["SCOREBOARD_DATA_DIR"] = data_dir
        for name in ("AUTH", "SCORE", "LEADERBOARD", "STREAM", "EDGE"):
            env[f"SCOREBOARD_{name}_PORT"] = str(_free_port())
        base = f"http://127.0.0.1:{env['SCOREBOARD_EDGE_PORT']}"
        runner = subprocess.Popen(
            ["make", "--no-print-directory", "run"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            text=True,
        )
        assert runner.stdout is not None
        seen: set[int] = set()
        try:
            started = time.monotonic()
            for line in runner.stdout:
                print("make run:", line.rstrip())
                if "Scoreboard is running" in line:
                    break
                if time.monotonic() - started > 300:
                    raise RuntimeError("the stack did not start in 5 minutes")
            else:
                raise RuntimeError(f"make run exited with {runner.wait()}")
            seen = {p.pid for p in psutil.Process(runner.pid).children(recursive=True)}
            seen |= {p.pid for p in _processes_using(data_dir)}
            asyncio.run(_exercise(base))
        finally:
            os.killpg(runner.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
            try:
                rest, _ = runner.communicate(timeout=60)
                print(rest.rstrip())
            except subprocess.TimeoutExpired:
                os.killpg(runner.pid, signal.SIGKILL)
                raise
        time.sleep(0.5)
        left = [p for p in seen if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
        left += [p.pid for p in _processes_using(data_dir)]
        if left:
            print(f"smoke: processes left behind: {sorted(set(left))}", file=sys.stderr)
            return 1
        if runner.returncode not in (0, -signal.SIGINT):
            print(f"smoke: make run exited with {runner.returncode}", file=sys.stderr)
            return 1
    print(f"smoke: stopped cleanly, {len(seen)} processes started and all gone")
    return 0


def _processes_using(folder: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info.get("cmdline") or []
        if any(folder in part for part in cmdline):
            found.append(process)
    return found


if __name__ == "__main__":
    raise SystemExit(main())
