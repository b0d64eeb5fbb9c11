"""`python -m bench.reset`: the reset of a board with a million players, timed, with writes going
on (issue 17). Against the running stack (`make run`) or one it starts (`--own-stack`).

A board of its own (`bench-reset`, no schedule) gets a score for each of the first `--players`
benchmark players in its open period (bulk INSERT ... SELECT, with their ledger rows), and its
ranking is rebuilt. Then completions counting on the default board and on `bench-reset` go in at
a fixed rate over gRPC while the period is closed by hand (ClosePeriod: the next period starts at
once, then the closing one's standings are frozen into the archive in one transaction). It reports
how long the close took, the entries frozen, and the write latency before, during and after the
close: a reset must not stall writes (they go to the new period, never waiting for the freeze).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import psycopg

from bench.harness import (
    BenchConfig,
    Target,
    _machine,
    _service_account,
    _target,
)
from bench.population import seed, user_id
from bench.stats import summary_ms
from common.auth.service_token import ServiceTokenSource
from common.config import ClientCredentials, Env
from common.errors import Reason, from_rpc_error
from common.grpc_client import call_metadata, open_channel
from scoreboard.auth.v1 import auth_service_pb2_grpc
from scoreboard.leaderboard.v1 import leaderboard_service_pb2 as lb
from scoreboard.leaderboard.v1 import leaderboard_service_pb2_grpc
from scoreboard.score.v1 import score_service_pb2, score_service_pb2_grpc

BOARD = "bench-reset"
RESET_ACTION = "bench-reset-hit"
# One score per player in the board's open period, with its ledger row (ledger == totals).
_FILL_SQL = """
WITH p AS (SELECT period FROM board_periods WHERE board_id = %(board)s AND closed_at IS NULL
           ORDER BY period DESC LIMIT 1),
     u AS (SELECT id, (abs(hashtext(id::text)) %% 1000000) + 1 AS total FROM users
           WHERE id >= %(first)s AND id <= %(last)s),
     s AS (INSERT INTO user_scores (board_id, period, user_id, total, version, reached_at)
           SELECT %(board)s, p.period, u.id, u.total, 1, now() FROM u, p
           ON CONFLICT DO NOTHING RETURNING user_id, period, total)
INSERT INTO user_actions (board_id, period, user_id, kind, points, day, actor, path, reason)
SELECT %(board)s, s.period, s.user_id, 'adjust', s.total, current_date, 'bench:seed', 'bench',
       'seed' FROM s
"""


async def _token(target: Target) -> str:
    secret = _service_account(target)
    channel = open_channel(target.addresses["auth"])
    try:
        source = ServiceTokenSource(
            auth_service_pb2_grpc.AuthServiceStub(channel),
            ClientCredentials("bench", secret),
        )
        return await source.token()
    finally:
        await channel.close()


async def _prepare(target: Target, token: str, players: int) -> int:
    """The board, its action, the population and the board's scores; returns the period."""
    channel = open_channel(target.addresses["leaderboard"])
    board = leaderboard_service_pb2_grpc.LeaderboardServiceStub(channel)
    try:
        try:
            await board.CreateBoard(
                lb.CreateBoardRequest(board=lb.BoardInfo(board_id=BOARD, name="Bench reset")),
                metadata=call_metadata(token),
            )
        except grpc.aio.AioRpcError as exc:
            if from_rpc_error(exc).reason != Reason.BOARD_EXISTS:
                raise
        seeded = await seed(target.database_url, players)
        print(f"bench.reset: population {seeded.users:,} users ({seeded.seconds:.1f}s)")
        started = time.monotonic()
        async with await psycopg.AsyncConnection.connect(target.database_url) as conn:
            cur = await conn.execute(
                _FILL_SQL,
                {"board": BOARD, "first": user_id(0), "last": user_id(players - 1)},
            )
            await conn.commit()
            print(
                f"bench.reset: {cur.rowcount:,} scores on {BOARD}"
                f" ({time.monotonic() - started:.1f}s)"
            )
        started = time.monotonic()
        reply = await board.RebuildRanking(
            lb.RebuildRankingRequest(board_id=BOARD), metadata=call_metadata(token), timeout=900
        )
        print(
            f"bench.reset: ranking of {reply.users:,} players rebuilt"
            f" ({time.monotonic() - started:.1f}s)"
        )
        info = await board.GetBoard(
            lb.GetBoardRequest(board_id=BOARD), metadata=call_metadata(token)
        )
    finally:
        await channel.close()
    channel = open_channel(target.addresses["score"])
    score = score_service_pb2_grpc.ScoreServiceStub(channel)
    action = score_service_pb2.Action(
        action_id=RESET_ACTION,
        name="Benchmark reset hit",
        description="Load-test action of the reset benchmark.",
        base_points=1,
        difficulty_multiplier=1.0,
        daily_limit=100_000,
        active=True,
        board_ids=[BOARD],
    )
    try:
        try:
            await score.CreateAction(
                score_service_pb2.CreateActionRequest(action=action),
                metadata=call_metadata(token),
            )
        except grpc.aio.AioRpcError as exc:
            if from_rpc_error(exc).reason != Reason.ACTION_EXISTS:
                raise
    finally:
        await channel.close()
    return int(info.board.current_period)


async def _writes(
    target: Target,
    token: str,
    players: int,
    rate: float,
    stop: asyncio.Event,
    log: list[tuple[float, float, bool]],
) -> None:
    """CompleteAction at `rate` per second until `stop`: (start, latency, ok) of each."""
    channel = open_channel(target.addresses["score"])
    score = score_service_pb2_grpc.ScoreServiceStub(channel)
    rng = random.Random(7)
    tasks: set[asyncio.Task[None]] = set()

    async def one() -> None:
        started = time.monotonic()
        ok = True
        try:
            await score.CompleteAction(
                score_service_pb2.CompleteActionRequest(
                    action_id=RESET_ACTION, user_id=user_id(rng.randrange(players))
                ),
                metadata=call_metadata(token),
                timeout=10,
            )
        except grpc.aio.AioRpcError:
            ok = False
        log.append((started, time.monotonic() - started, ok))

    try:
        next_at = time.monotonic()
        while not stop.is_set():
            task = asyncio.create_task(one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            next_at += 1 / rate
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        if tasks:
            await asyncio.gather(*tasks)
    finally:
        await channel.close()


def _window(log: list[tuple[float, float, bool]], start: float, end: float) -> dict[str, Any]:
    inside = [(lat, ok) for at, lat, ok in log if start <= at < end]
    return {
        "writes": len(inside),
        "failed": sum(1 for _, ok in inside if not ok),
        **summary_ms([lat for lat, ok in inside if ok]),
    }


async def _run(target: Target, args: argparse.Namespace) -> dict[str, Any]:
    token = await _token(target)
    period = await _prepare(target, token, args.players)
    stop = asyncio.Event()
    log: list[tuple[float, float, bool]] = []
    writer = asyncio.create_task(_writes(target, token, args.players, args.rate, stop, log))
    await asyncio.sleep(args.seconds)
    channel = open_channel(target.addresses["leaderboard"])
    board = leaderboard_service_pb2_grpc.LeaderboardServiceStub(channel)
    close_start = time.monotonic()
    closed = await board.ClosePeriod(
        lb.ClosePeriodRequest(board_id=BOARD), metadata=call_metadata(token), timeout=900
    )
    close_end = time.monotonic()
    await channel.close()
    await asyncio.sleep(args.seconds)
    stop.set()
    await writer
    first = log[0][0] if log else close_start
    return {
        "players": args.players,
        "rate": args.rate,
        "period_closed": closed.period,
        "period_before": period,
        "entries_frozen": closed.entries,
        "close_seconds": round(close_end - close_start, 2),
        "writes_before": _window(log, first, close_start),
        "writes_during_close": _window(log, close_start, close_end),
        "writes_after": _window(log, close_end, close_end + args.seconds),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reset", description=__doc__)
    parser.add_argument("--players", type=int, default=1_000_000, help="players on the board")
    parser.add_argument("--rate", type=float, default=200.0, help="completions/s during the run")
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="writes before and after the close"
    )
    parser.add_argument("--own-stack", action="store_true", help="start a stack for the run")
    parser.add_argument("--out-dir", default=".bench", help="where the JSON result goes")
    args = parser.parse_args(argv)
    config = BenchConfig(
        users=args.players,
        phases=(),
        viewers=(),
        use_running=not args.own_stack,
        out_dir=Path(args.out_dir).resolve(),
        data_dir=Path(Env().text("DATA_DIR", ".data")).resolve(),
    )
    target = _target(config, 1)
    try:
        result = asyncio.run(_run(target, args))
    finally:
        if target.started is not None:
            target.started.stop()
    report = {"machine": _machine(), "command": " ".join(sys.argv), "reset": result}
    print(json.dumps(report, indent=2))
    config.out_dir.mkdir(parents=True, exist_ok=True)
    out = config.out_dir / f"reset-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"bench.reset: results in {out}")
    ok = result["writes_during_close"]["failed"] == 0 and result["writes_after"]["failed"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
