"""`scoreboard boards create|update|list|close-period`: boards and their periods through
LeaderboardService's board RPCs, as an admin service account (issue 17).

`create` defines a board (its schedule: a 5-field cron read in an IANA time zone, none for a
board that never resets); `update` changes the options given and keeps the others (sort order
and combine cannot change once the board has scores; a schedule change applies from the next
period); `list` shows every board with its current period and next reset; `close-period` ends
the board's open period now and freezes its standings (the next period starts at once).

--tiers gives the board's tiers, best first, as comma-separated ID:NAME:CUTOFF items, the last
one ID:NAME without a cutoff (the default tier); a cutoff is top_percent=P, top_rank=N or
min_score=S, e.g. "diamond:Diamond:top_percent=1,gold:Gold:top_rank=10,
silver:Silver:min_score=100,bronze:Bronze". --tiers "" removes them; `update` without --tiers
keeps them.

The account's client id and secret come from SCOREBOARD_CLIENT_ID and SCOREBOARD_CLIENT_SECRET
(or --client-secret-file), the addresses from SCOREBOARD_AUTH_ADDR and
SCOREBOARD_LEADERBOARD_ADDR. Answers print as JSON; refusals print their reason and exit 1.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ops.cli.account import TIMEOUT, add_account_command, run_call

if TYPE_CHECKING:
    from google.protobuf.message import Message

    from scoreboard.leaderboard.v1.leaderboard_service_pb2_grpc import (
        LeaderboardServiceAsyncStub,
    )

# A tier as --tiers gives it: (id, name, cutoff kind or None, value as written).
TierSpec = tuple[str, str, str | None, str]
_CUTOFFS = ("top_percent", "top_rank", "min_score")


def register(sub: Any) -> None:
    """Add `boards` and its commands to the `scoreboard` parser's subcommands."""
    boards = add_account_command(
        sub,
        "boards",
        "create, change and list boards, close a period by hand (admin service account)",
        __doc__,
    )
    verbs = boards.add_subparsers(dest="verb", required=True)
    create = verbs.add_parser("create", help="define a new board (audited)")
    create.add_argument("board_id", help="^[a-z0-9][a-z0-9_-]{0,31}$")
    create.add_argument("--name", required=True)
    _definition_options(create, defaults=True)
    create.set_defaults(handler=_run, call=_create)
    update = verbs.add_parser("update", help="change a board's definition (audited)")
    update.add_argument("board_id")
    update.add_argument("--name")
    _definition_options(update, defaults=False)
    update.set_defaults(handler=_run, call=_update)
    listing = verbs.add_parser("list", help="every board, its current period and next reset")
    listing.set_defaults(handler=_run, call=_list)
    close = verbs.add_parser("close-period", help="close the board's open period now (audited)")
    close.add_argument("board_id")
    close.set_defaults(handler=_run, call=_close)


def _definition_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    parser.add_argument(
        "--sort-order", choices=["desc", "asc"], default="desc" if defaults else None
    )
    parser.add_argument(
        "--combine", choices=["sum", "best", "latest"], default="sum" if defaults else None
    )
    parser.add_argument(
        "--reset-schedule",
        metavar="CRON",
        help='5-field cron, e.g. "0 0 * * 1" (Mondays 00:00); "" for none',
    )
    parser.add_argument("--time-zone", metavar="ZONE", help="IANA zone of the schedule (UTC)")
    parser.add_argument("--season-start", type=datetime.fromisoformat, metavar="ISO")
    parser.add_argument("--season-end", type=datetime.fromisoformat, metavar="ISO")
    parser.add_argument("--keep-periods", type=int, help="closed periods kept (0: all)")
    parser.add_argument(
        "--tiers",
        type=_tiers,
        metavar="ID:NAME:CUTOFF,...",
        help='tiers best first, the last without a cutoff, e.g. "gold:Gold:top_rank=10,'
        'bronze:Bronze"; "" for none',
    )


def _tiers(text: str) -> list[TierSpec]:
    """--tiers parsed (the server checks the rest: one default, last, looser down the list)."""
    specs: list[TierSpec] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        parts = item.split(":")
        if len(parts) == 2:
            specs.append((parts[0], parts[1], None, ""))
            continue
        kind, _, value = parts[2].partition("=") if len(parts) == 3 else ("", "", "")
        if kind not in _CUTOFFS or not value:
            raise argparse.ArgumentTypeError(
                f"tier {item!r}: expected ID:NAME or ID:NAME:CUTOFF=VALUE with a cutoff of"
                f" {', '.join(_CUTOFFS)}"
            )
        try:
            float(value) if kind == "top_percent" else int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"tier {item!r}: {value!r} is not a number") from None
        specs.append((parts[0], parts[1], kind, value))
    return specs


def _apply(info: Any, args: argparse.Namespace) -> Any:
    """The board definition with the options given."""
    if args.name is not None:
        info.name = args.name
    if args.sort_order is not None:
        info.sort_order = args.sort_order
    if args.combine is not None:
        info.combine = args.combine
    if args.reset_schedule is not None:
        info.reset_schedule = args.reset_schedule
    if args.time_zone is not None:
        info.time_zone = args.time_zone
    if args.season_start is not None:
        info.season_start_time.FromDatetime(args.season_start)
    if args.season_end is not None:
        info.season_end_time.FromDatetime(args.season_end)
    if args.keep_periods is not None:
        info.keep_periods = args.keep_periods
    if args.tiers is not None:
        from scoreboard.leaderboard.v1 import leaderboard_service_pb2 as pb

        del info.tiers[:]
        for tier_id, name, kind, value in args.tiers:
            tier = pb.TierDefinition(tier_id=tier_id, name=name)
            if kind == "top_percent":
                tier.top_percent = float(value)
            elif kind == "top_rank":
                tier.top_rank = int(value)
            elif kind == "min_score":
                tier.min_score = int(value)
            info.tiers.append(tier)
    return info


async def _create(stub: LeaderboardServiceAsyncStub, args: argparse.Namespace) -> Message:
    from scoreboard.leaderboard.v1 import leaderboard_service_pb2 as pb

    info = _apply(pb.BoardInfo(board_id=args.board_id), args)
    return await stub.CreateBoard(
        pb.CreateBoardRequest(board=info), metadata=args.metadata, timeout=TIMEOUT
    )


async def _update(stub: LeaderboardServiceAsyncStub, args: argparse.Namespace) -> Message:
    from scoreboard.leaderboard.v1 import leaderboard_service_pb2 as pb

    current = await stub.GetBoard(
        pb.GetBoardRequest(board_id=args.board_id), metadata=args.metadata, timeout=TIMEOUT
    )
    info = pb.BoardInfo()
    info.CopyFrom(current.board)
    return await stub.UpdateBoard(
        pb.UpdateBoardRequest(board=_apply(info, args)), metadata=args.metadata, timeout=TIMEOUT
    )


async def _list(stub: LeaderboardServiceAsyncStub, args: argparse.Namespace) -> Message:
    from scoreboard.leaderboard.v1 import leaderboard_service_pb2 as pb

    every = pb.ListBoardsResponse()
    token = ""
    while True:
        page = await stub.ListBoards(
            pb.ListBoardsRequest(page_size=100, page_token=token),
            metadata=args.metadata,
            timeout=TIMEOUT,
        )
        every.boards.extend(page.boards)
        token = page.next_page_token
        if not token:
            return every


async def _close(stub: LeaderboardServiceAsyncStub, args: argparse.Namespace) -> Message:
    from scoreboard.leaderboard.v1 import leaderboard_service_pb2 as pb

    return await stub.ClosePeriod(
        pb.ClosePeriodRequest(board_id=args.board_id), metadata=args.metadata, timeout=TIMEOUT
    )


def _run(args: argparse.Namespace) -> int:
    """Sign in, make the call on LeaderboardService, print the answer as JSON (0) or the refusal
    (1)."""
    from scoreboard.leaderboard.v1 import leaderboard_service_pb2_grpc

    stub = leaderboard_service_pb2_grpc.LeaderboardServiceStub
    return run_call(args, lambda endpoints: endpoints.leaderboard, stub)
