"""`make run`'s weekly board (issue 17): beside the default (all-time) board, a board that resets
every Monday at 00:00 in Berlin, and the catalog's actions counting on both.

Made through the admin path an operator uses (`scoreboard boards create`, the catalog's
UpdateAction), as the dev stack's admin service account, once the services are healthy. It runs
on every start and changes only what is missing: a board that exists is left as it is (its
schedule may have been changed on purpose), and an action gains the board only when it does not
list it yet, so a second start creates nothing twice and writes nothing to the audit log.
SCOREBOARD_DEV_WEEKLY_BOARD=false leaves boards and catalog alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from common.config import ClientCredentials, Endpoints
from common.errors import ServiceError, from_rpc_error
from ops.cli.account import admin_channel

TIMEOUT = 10.0


@dataclass(frozen=True)
class DevBoard:
    board_id: str = "weekly"
    name: str = "This week"
    reset_schedule: str = "0 0 * * 1"  # Mondays 00:00
    time_zone: str = "Europe/Berlin"


@dataclass(frozen=True)
class Seeded:
    """What a start did: whether it created the board, which actions it linked to it."""

    created: bool
    linked: tuple[str, ...]


async def ensure_dev_board(
    endpoints: Endpoints, credentials: ClientCredentials, board: DevBoard | None = None
) -> Seeded:
    """Create the board unless it exists, then make every catalog action count on it too.
    A refusal raises RuntimeError naming what failed."""
    board = board or DevBoard()
    try:
        created = await _ensure_board(endpoints, credentials, board)
        linked = await _link_actions(endpoints, credentials, board.board_id)
    except grpc.aio.AioRpcError as exc:
        error = from_rpc_error(exc)
        raise RuntimeError(
            f"setting up the {board.board_id} board: {error.reason}: {error.message}"
        ) from None
    except ServiceError as error:  # the admin token was refused
        raise RuntimeError(
            f"setting up the {board.board_id} board: {error.reason}: {error.message}"
        ) from None
    return Seeded(created, linked)


async def _ensure_board(
    endpoints: Endpoints, credentials: ClientCredentials, board: DevBoard
) -> bool:
    from scoreboard.leaderboard.v1 import leaderboard_service_pb2 as pb
    from scoreboard.leaderboard.v1 import leaderboard_service_pb2_grpc

    async with admin_channel(endpoints.auth, endpoints.leaderboard, credentials) as signed_in:
        channel, metadata = signed_in
        stub = leaderboard_service_pb2_grpc.LeaderboardServiceStub(channel)
        try:
            await stub.GetBoard(
                pb.GetBoardRequest(board_id=board.board_id), metadata=metadata, timeout=TIMEOUT
            )
            return False
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
        info = pb.BoardInfo(
            board_id=board.board_id,
            name=board.name,
            sort_order="desc",
            combine="sum",
            reset_schedule=board.reset_schedule,
            time_zone=board.time_zone,
        )
        try:
            await stub.CreateBoard(
                pb.CreateBoardRequest(board=info), metadata=metadata, timeout=TIMEOUT
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.ALREADY_EXISTS:  # another start got there first
                raise
            return False
        return True


async def _link_actions(
    endpoints: Endpoints, credentials: ClientCredentials, board_id: str
) -> tuple[str, ...]:
    from scoreboard.score.v1 import score_service_pb2 as pb
    from scoreboard.score.v1 import score_service_pb2_grpc

    linked: list[str] = []
    async with admin_channel(endpoints.auth, endpoints.score, credentials) as signed_in:
        channel, metadata = signed_in
        stub = score_service_pb2_grpc.ScoreServiceStub(channel)
        listed = await stub.ListActions(
            pb.ListActionsRequest(include_inactive=True), metadata=metadata, timeout=TIMEOUT
        )
        for current in listed.actions:
            if board_id in current.board_ids:
                continue
            action = pb.Action()
            action.CopyFrom(current)
            action.ClearField("remaining_today")  # as `scoreboard actions update` sends it
            action.ClearField("available_time")
            action.board_ids.append(board_id)
            await stub.UpdateAction(
                pb.UpdateActionRequest(action=action), metadata=metadata, timeout=TIMEOUT
            )
            linked.append(action.action_id)
    return tuple(linked)
