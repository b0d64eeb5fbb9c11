"""`scoreboard admin ...`: the AdminService from a terminal, as an admin service account.

The account's client id and secret come from SCOREBOARD_CLIENT_ID and SCOREBOARD_CLIENT_SECRET
(or --client-secret-file); never from a flag, which other users of the machine can read. The CLI
asks auth_service (SCOREBOARD_AUTH_ADDR) for a token with the admin scope and calls
score_service (SCOREBOARD_SCORE_ADDR). Answers print as JSON; refusals print their reason and
exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.config import ClientCredentials, ConfigError, Env

if TYPE_CHECKING:
    from google.protobuf.message import Message

    from scoreboard.admin.v1.admin_service_pb2_grpc import AdminServiceAsyncStub

Call = Callable[["AdminServiceAsyncStub", argparse.Namespace], Awaitable["Message"]]
TIMEOUT = 30.0


def register(sub: Any) -> None:
    """Add `admin` and its commands to the `scoreboard` parser's subcommands."""
    admin = sub.add_parser(
        "admin",
        help="admin tools: bans, ledger corrections, audit log (admin service account)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_account_options(admin)
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
    anomalies = command("anomalies", _anomalies, "flagged score anomalies, newest first")
    anomalies.add_argument("--user-id", default="")
    anomalies.add_argument("--include-reviewed", action="store_true")
    for listing in (ledger, audit, anomalies):
        listing.add_argument("--page-size", type=int, default=0)
        listing.add_argument("--page-token", default="")


def add_account_options(parser: argparse.ArgumentParser) -> None:
    """The admin service account's options (its secret never as a flag)."""
    parser.add_argument("--client-id", help="default: SCOREBOARD_CLIENT_ID")
    parser.add_argument("--client-secret-file", type=Path, help="default: SCOREBOARD_CLIENT_SECRET")


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


async def _anomalies(stub: AdminServiceAsyncStub, args: argparse.Namespace) -> Message:
    from scoreboard.admin.v1 import admin_service_pb2 as pb

    request = pb.ListAnomaliesRequest(
        user_id=args.user_id,
        include_reviewed=args.include_reviewed,
        page_size=args.page_size,
        page_token=args.page_token,
    )
    return await stub.ListAnomalies(request, metadata=args.metadata, timeout=TIMEOUT)


def _credentials(args: argparse.Namespace, env: Env) -> ClientCredentials:
    client_id = args.client_id or env.required("CLIENT_ID")
    if args.client_secret_file is not None:
        try:
            secret = args.client_secret_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read {args.client_secret_file}: {exc}") from None
    else:
        secret = env.required("CLIENT_SECRET")
    return ClientCredentials(client_id, secret)


async def _call(args: argparse.Namespace, env: Env) -> Message:
    from common.auth.principal import SCOPE_ADMIN
    from common.auth.service_token import ServiceTokenSource
    from common.config import Endpoints
    from common.grpc_client import call_metadata, open_channel
    from scoreboard.admin.v1 import admin_service_pb2_grpc
    from scoreboard.auth.v1 import auth_service_pb2_grpc

    endpoints = Endpoints.from_env(env)
    credentials = _credentials(args, env)
    auth_channel = open_channel(endpoints.auth)
    score_channel = open_channel(endpoints.score)
    try:
        tokens = ServiceTokenSource(
            auth_service_pb2_grpc.AuthServiceStub(auth_channel),
            credentials,
            scopes=(SCOPE_ADMIN,),
        )
        args.metadata = call_metadata(await tokens.token())
        call: Call = args.call
        return await call(admin_service_pb2_grpc.AdminServiceStub(score_channel), args)
    finally:
        await auth_channel.close()
        await score_channel.close()


def run(args: argparse.Namespace) -> int:
    """Sign in, make the call in args.call, print the answer as JSON (0) or the refusal (1)."""
    import grpc
    import orjson
    from google.protobuf.json_format import MessageToDict

    from common.errors import ServiceError, from_rpc_error

    try:
        reply = asyncio.run(_call(args, Env()))
    except grpc.aio.AioRpcError as exc:
        error = from_rpc_error(exc)
        print(f"refused: {error.reason}: {error.message}", file=sys.stderr)
        return 1
    except ServiceError as error:  # the token request was refused
        print(f"refused: {error.reason}: {error.message}", file=sys.stderr)
        return 1
    body = MessageToDict(reply, preserving_proto_field_name=True)
    sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0
