"""A board's tiers through the real leaderboard_service (issue 18): set with CreateBoard and
UpdateBoard and shown by GetBoard/ListBoards; GetUserRank, ListEntries, ListEntriesAround and
ListEntriesForUsers give each player's tier at the boundaries (ties share one); closing the period
freezes every entry's tier into the archive (a later rename does not rewrite it); the Redis copy
stream_service reads follows; invalid definitions are refused with INVALID_ARGUMENT naming the
problem."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from common.tiers import Tier, decode_copy
from scoreboard.leaderboard.v1 import leaderboard_service_pb2 as pb
from scoreboard.leaderboard.v1 import leaderboard_service_pb2_grpc
from tests.conftest import StackFactory
from tests.support.boards import Scored, close_period, create_board, score
from tests.support.clients import metadata
from tests.support.servers import wait_for
from tests.support.stack import Stack
from tests.support.tokens import admin_token

LADDER = "ladder"


def _tiers(gold_name: str = "Gold") -> list[pb.TierDefinition]:
    return [
        pb.TierDefinition(tier_id="diamond", name="Diamond", top_percent=1.0),
        pb.TierDefinition(tier_id="gold", name=gold_name, top_rank=10),
        pb.TierDefinition(tier_id="silver", name="Silver", min_score=100),
        pb.TierDefinition(tier_id="bronze", name="Bronze"),
    ]


def _info(tiers: list[pb.TierDefinition], board: str = LADDER) -> pb.BoardInfo:
    return pb.BoardInfo(
        board_id=board,
        name="Ladder",
        reset_schedule="0 0 * * 1",
        time_zone="Europe/Berlin",
        tiers=tiers,
    )


async def _call(stack: Stack, method: str, request: Any) -> Any:
    async with grpc.aio.insecure_channel(stack.address("leaderboard")) as channel:
        stub = leaderboard_service_pb2_grpc.LeaderboardServiceStub(channel)
        return await getattr(stub, method)(
            request, metadata=metadata(await admin_token(stack)), timeout=30
        )


async def _refused(stack: Stack, method: str, request: Any) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _call(stack, method, request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return str(caught.value.details())


async def _tier_of(stack: Stack, user_id: str, period: int = 0) -> tuple[int, str, str]:
    reply = await _call(
        stack, "GetUserRank", pb.GetUserRankRequest(board_id=LADDER, user_id=user_id, period=period)
    )
    entry = reply.entry
    if not entry.HasField("tier"):
        return int(entry.rank), "", ""
    return int(entry.rank), entry.tier.tier_id, entry.tier.name


async def test_tiers_from_definition_to_archive(stack_factory: StackFactory) -> None:
    async with stack_factory(with_edge=False) as stack:
        # 200 players: the top 1 % is ranks 1-2, Gold ranks up to 10, then Silver from 100 points.
        # Totals 250, 249, 249 (tied second), 247, 246, ... down to 52.
        players = [Scored(250), Scored(249), Scored(249)] + [Scored(250 - i) for i in range(3, 200)]
        await create_board(stack, LADDER, "Ladder", schedule="0 0 * * 1", zone="Europe/Berlin")
        await _call(stack, "UpdateBoard", pb.UpdateBoardRequest(board=_info(_tiers())))
        await score(stack, LADDER, 1, players)

        async def all_ranked() -> bool:
            reply = await _call(stack, "ListEntries", pb.ListEntriesRequest(board_id=LADDER))
            return int(reply.total_users) == len(players)

        await wait_for(all_ranked, timeout=30)

        # The definition as the board shows it.
        shown = (await _call(stack, "GetBoard", pb.GetBoardRequest(board_id=LADDER))).board
        assert list(shown.tiers) == _tiers()
        listed = await _call(stack, "ListBoards", pb.ListBoardsRequest(page_size=100))
        assert [list(b.tiers) for b in listed.boards if b.board_id == LADDER] == [_tiers()]
        default = (await _call(stack, "GetBoard", pb.GetBoardRequest())).board
        assert list(default.tiers) == []

        # Boundaries: ranks 1 and 2 (a tie: both) are the top 1 %; 4 and 10 are Gold; 11 has
        # 240 points: Silver; 100 points exactly is Silver, 99 Bronze.
        by_total = {p.total: p for p in players[3:]}
        assert await _tier_of(stack, players[0].user_id) == (1, "diamond", "Diamond")
        assert await _tier_of(stack, players[1].user_id) == (2, "diamond", "Diamond")
        assert await _tier_of(stack, players[2].user_id) == (2, "diamond", "Diamond")
        assert await _tier_of(stack, by_total[247].user_id) == (4, "gold", "Gold")
        assert await _tier_of(stack, by_total[241].user_id) == (10, "gold", "Gold")
        assert await _tier_of(stack, by_total[240].user_id) == (11, "silver", "Silver")
        assert await _tier_of(stack, by_total[100].user_id) == (151, "silver", "Silver")
        assert await _tier_of(stack, by_total[99].user_id) == (152, "bronze", "Bronze")

        # Every read of the live board agrees.
        page = await _call(stack, "ListEntries", pb.ListEntriesRequest(board_id=LADDER))
        assert [e.tier.tier_id for e in page.entries] == ["diamond"] * 3 + ["gold"] * 7
        around = await _call(
            stack,
            "ListEntriesAround",
            pb.ListEntriesAroundRequest(board_id=LADDER, user_id=by_total[100].user_id, count=1),
        )
        assert [(e.score, e.tier.tier_id) for e in around.entries] == [
            (101, "silver"),
            (100, "silver"),
            (99, "bronze"),
        ]
        friends = await _call(
            stack,
            "ListEntriesForUsers",
            pb.ListEntriesForUsersRequest(
                board_id=LADDER,
                user_ids=[players[0].user_id, by_total[99].user_id, Scored(0).user_id],
            ),
        )
        assert [(e.ranked, e.tier.tier_id) for e in friends.entries] == [
            (True, "diamond"),
            (True, "bronze"),
            (False, ""),
        ]

        # The Redis copy stream_service's rank hub reads.
        copied = await stack.redis.get(stack.keys.board(LADDER).tiers)
        assert copied is not None
        tiers, asc = decode_copy(copied)
        assert (tiers[0], tiers[-1], asc) == (
            Tier("diamond", "Diamond", "top_percent", 10),
            Tier("bronze", "Bronze"),
            False,
        )

        # Closing the period freezes every entry's tier.
        closed = await close_period(stack, LADDER)
        assert (closed.period, closed.entries) == (1, len(players))
        archive = await _call(
            stack,
            "ListPeriodEntries",
            pb.ListPeriodEntriesRequest(board_id=LADDER, period=1, page_size=100, page_token="100"),
        )
        frozen = [(e.rank, e.score, e.tier.tier_id, e.tier.name) for e in archive.entries]
        assert frozen[50] == (151, 100, "silver", "Silver")
        assert frozen[51] == (152, 99, "bronze", "Bronze")
        mine = await _call(
            stack,
            "ListPeriodEntries",
            pb.ListPeriodEntriesRequest(board_id=LADDER, period=1, user_id=players[2].user_id),
        )
        assert (mine.user_entry.rank, mine.user_entry.tier.tier_id) == (2, "diamond")
        first = await _call(
            stack, "ListPeriodEntries", pb.ListPeriodEntriesRequest(board_id=LADDER, period=1)
        )
        assert [e.tier.tier_id for e in first.entries] == ["diamond"] * 3 + ["gold"] * 7
        ended = (await _call(stack, "GetBoard", pb.GetBoardRequest(board_id=LADDER))).board
        assert [w.tier.tier_id for w in ended.last_winners] == ["diamond"] * 3

        # A rename later changes the live board's tiers, not the archive's.
        await _call(stack, "UpdateBoard", pb.UpdateBoardRequest(board=_info(_tiers("Golden"))))
        await score(stack, LADDER, 2, [Scored(10)] + [Scored(5) for _ in range(20)])
        assert await _tier_of(stack, by_total[247].user_id, period=1) == (4, "gold", "Gold")
        page = await _call(stack, "ListEntries", pb.ListEntriesRequest(board_id=LADDER, period=1))
        assert page.entries[3].tier.name == "Gold"

        async def live_golden() -> bool:
            reply = await _call(stack, "ListEntries", pb.ListEntriesRequest(board_id=LADDER))
            return [e.tier.name for e in reply.entries][:2] == ["Golden", "Golden"]

        await wait_for(live_golden, timeout=30)

        # Removing the tiers: none on the live board, the archive keeps its own.
        await _call(stack, "UpdateBoard", pb.UpdateBoardRequest(board=_info([])))
        reply = await _call(stack, "ListEntries", pb.ListEntriesRequest(board_id=LADDER))
        assert not any(e.HasField("tier") for e in reply.entries)
        assert (await _tier_of(stack, players[0].user_id, period=1))[1] == "diamond"
        copied = await stack.redis.get(stack.keys.board(LADDER).tiers)
        assert copied is not None
        assert decode_copy(copied) == ((), False)


async def test_invalid_tiers_are_refused(stack_factory: StackFactory) -> None:
    async with stack_factory(with_edge=False) as stack:
        bronze = pb.TierDefinition(tier_id="bronze", name="Bronze")
        gold = pb.TierDefinition(tier_id="gold", name="Gold", top_rank=10)
        cases = [
            ([gold], "exactly one tier must be the default"),
            ([bronze, gold], "must come last"),
            ([gold, gold, bronze], "tier id 'gold' is used twice"),
            (
                [gold, pb.TierDefinition(tier_id="top", name="Top", top_rank=3), bronze],
                "not looser",
            ),
            ([pb.TierDefinition(tier_id="d", name="D", top_percent=0.05), bronze], "0.1"),
            ([pb.TierDefinition(tier_id="d", name="", top_rank=1), bronze], "name must be"),
            (
                [pb.TierDefinition(tier_id=f"t{i}", name="T", top_rank=i + 1) for i in range(16)]
                + [bronze],
                "at most 16 tiers",
            ),
        ]
        for tiers, problem in cases:
            message = await _refused(
                stack, "CreateBoard", pb.CreateBoardRequest(board=_info(tiers, "bad"))
            )
            assert problem in message, (problem, message)
        # Nothing was created; an update of an existing board is refused the same way.
        await create_board(stack, LADDER, "Ladder")
        message = await _refused(
            stack, "UpdateBoard", pb.UpdateBoardRequest(board=_info([gold], LADDER))
        )
        assert "exactly one tier must be the default" in message
        shown = (await _call(stack, "GetBoard", pb.GetBoardRequest(board_id=LADDER))).board
        assert list(shown.tiers) == []
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _call(stack, "GetBoard", pb.GetBoardRequest(board_id="bad"))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
