"""`scoreboard admin ...`: the AdminService from a terminal, as an admin service account.

The account's client id and secret come from SCOREBOARD_CLIENT_ID and SCOREBOARD_CLIENT_SECRET
(or --client-secret-file); never from a flag, which other users of the machine can read. The CLI
asks auth_service (SCOREBOARD_AUTH_ADDR) for a token with the admin scope and calls
score_service (SCOREBOARD_SCORE_ADDR). Answers print as JSON; refusals print their reason and
exit 1.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ops.cli.account import TIMEOUT, add_account_command, run_call

if TYPE_CHECKING:
    from google.protobuf.message import Message

    from scoreboard.admin.v1.admin_service_pb2_grpc import AdminServiceAsyncStub

Call = Callable[["AdminServiceAsyncStub", argparse.Namespace], Awaitable["Message"]]


def register(sub: Any) -> None:
    """Add `admin` and its commands to the `scoreboard` parser's subcommands."""
    admin = add_account_command(
        sub,
        "admin",
        "admin tools: bans, ledger corrections, audit log (admin service account)",
        __doc__,
    )
    commands = admin.add_subparsers(dest="admin_command", required=True)

    def command(name: str, call: Call, text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(name, help=text)
        parser.set_defaults(handler=run, call=call)
        return parser

    ban = command("ban", _ban, "ban a user: out of the ranking at once, completions refused")
    ban.add_argument("user_id")
    ban.add_argument("--reason", required=True)
    unban = command("unban", _unban, "lift a ban: ranked again with the total they had")
    unban.add_argument("user_id")
    unban.add_argument("--reason", required=True)
    void = command("void", _void, "void a ledger entry with a compensating entry")
    void.add_argument("entry_id", type=int)
    void.add_argument("--reason", required=True)
    adjust = command("adjust", _adjust, "add (or remove, when negative) points with a reason")
    adjust.add_argument("user_id")
    adjust.add_argument("points", type=int)
    adjust.add_argument("--reason", required=True)
    ledger = command("ledger", _ledger, "a user's ledger, newest first")
    ledger.add_argument("user_id")
    audit = command("audit", _audit, "the audit log, newest first")
    audit.add_argument("--actor", default="")
    audit.add_argument("--action", default="", help="e.g. user.ban, ledger.void, score.adjust")
    audit.add_argument("--target", default="")
    anomalies = command("anomalies", list_anomalies, "flagged score anomalies, newest first")
    anomalies.add_argument("--user-id", default="")
    anomalies.add_argument("--include-reviewed", action="store_true")
    for listing in (ledger, audit, anomalies):
        listing.add_argument("--page-size", type=int, default=0)
        listing.add_argument("--page-token", default="")


async def _ban(stub: AdminServiceAsyncStub, args: argparse.Namespace) -> Message:
    from scoreboard.admin.v1 import admin_service_pb2 as pb

    request = pb.BanUserRequest(user_id=args.user_id, reason=args.reason)
    return await stub.BanUser(request, metadata=args.metadata, timeout=TIMEOUT)


async def _unban(stub: AdminServiceAsyncStub, args: argparse.Namespace) -> Message:
    from scoreboard.admin.v1 import admin_service_pb2 as pb

    request = pb.UnbanUserRequest(user_id=args.user_id, reason=args.reason)
    return await stub.UnbanUser(request, metadata=args.metadata, timeout=TIMEOUT)


async def _void(stub: AdminServiceAsyncStub, args: argparse.Namespace) -> Message:
    from scoreboard.admin.v1 import admin_service_pb2 as pb

    request = pb.VoidLedgerEntryRequest(entry_id=args.entry_id, reason=args.reason)
    return await stub.VoidLedgerEntry(request, metadata=args.metadata, timeout=TIMEOUT)


async def _adjust(stub: AdminServiceAsyncStub, args: argparse.Namespace) -> Message:
    from scoreboard.admin.v1 import admin_service_pb2 as pb

    request = pb.AdjustScoreRequest(user_id=args.user_id, points=args.points, reason=args.reason)
    return await stub.AdjustScore(request, metadata=args.metadata, timeout=TIMEOUT)


async def _ledger(stub: AdminServiceAsyncStub, args: argparse.Namespace) -> Message:
    from scoreboard.admin.v1 import admin_service_pb2 as pb

    request = pb.ListLedgerEntriesRequest(
        user_id=args.user_id, page_size=args.page_size, page_token=args.page_token
    )
    return await stub.ListLedgerEntries(request, metadata=args.metadata, timeout=TIMEOUT)


async def _audit(stub: AdminServiceAsyncStub, args: argparse.Namespace) -> Message:
    from scoreboard.admin.v1 import admin_service_pb2 as pb

    request = pb.ListAuditLogRequest(
        actor=args.actor,
        action=args.action,
        target=args.target,
        page_size=args.page_size,
        page_token=args.page_token,
    )
    return await stub.ListAuditLog(request, metadata=args.metadata, timeout=TIMEOUT)


async def list_anomalies(stub: AdminServiceAsyncStub, args: argparse.Namespace) -> Message:
    """ListAnomalies: `admin anomalies` and `anomalies list` (args.user_id, args.include_reviewed
    and the page)."""
    from scoreboard.admin.v1 import admin_service_pb2 as pb

    request = pb.ListAnomaliesRequest(
        user_id=args.user_id,
        include_reviewed=args.include_reviewed,
        page_size=args.page_size,
        page_token=args.page_token,
    )
    return await stub.ListAnomalies(request, metadata=args.metadata, timeout=TIMEOUT)


def run(args: argparse.Namespace) -> int:
    """Sign in, make the call in args.call on score_service's AdminService, print the answer as
    JSON (0) or the refusal (1)."""
    from scoreboard.admin.v1 import admin_service_pb2_grpc

    return run_call(
        args, lambda endpoints: endpoints.score, admin_service_pb2_grpc.AdminServiceStub
    )
