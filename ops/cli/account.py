"""The admin service account the `admin`, `anomalies` and `boards` commands sign in as (and
`actions`, through its own channel): the command with the account's options, its credentials, the
signed-in channel, and how a call's answer or refusal is printed.

The client id and secret come from SCOREBOARD_CLIENT_ID and SCOREBOARD_CLIENT_SECRET (or
--client-secret-file); never from a flag, which other users of the machine can read."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.config import ClientCredentials, ConfigError, Endpoints, Env

if TYPE_CHECKING:
    import grpc
    from google.protobuf.message import Message

Metadata = tuple[tuple[str, str], ...]
# The call a command makes on the stub it is given (args.call).
Call = Callable[[Any, argparse.Namespace], Awaitable["Message"]]
TIMEOUT = 30.0


def add_account_command(sub: Any, name: str, text: str, doc: str | None) -> argparse.ArgumentParser:
    """`scoreboard NAME`, a command that signs in as the admin service account: its parser, with
    `text` as its help, its module's docstring `doc` as its description (kept as written) and the
    account's options (its secret never as a flag)."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=text, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--client-id", help="default: SCOREBOARD_CLIENT_ID")
    parser.add_argument("--client-secret-file", type=Path, help="default: SCOREBOARD_CLIENT_SECRET")
    return parser


def credentials(args: argparse.Namespace, env: Env) -> ClientCredentials:
    client_id = args.client_id or env.required("CLIENT_ID")
    if args.client_secret_file is not None:
        try:
            secret = args.client_secret_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read {args.client_secret_file}: {exc}") from None
    else:
        secret = env.required("CLIENT_SECRET")
    return ClientCredentials(client_id, secret)


@contextlib.asynccontextmanager
async def admin_channel(
    auth: str, target: str, credentials: ClientCredentials
) -> AsyncIterator[tuple[grpc.aio.Channel, Metadata]]:
    """A channel to `target` and call metadata with a token of the `admin` scope for
    `credentials`, from auth_service at `auth`: how the admin commands sign in (and `make
    run`, setting up its weekly board). Both channels close on the way out."""
    from common.auth.principal import SCOPE_ADMIN
    from common.auth.service_token import ServiceTokenSource
    from common.grpc_client import call_metadata, open_channel
    from scoreboard.auth.v1 import auth_service_pb2_grpc

    auth_channel = open_channel(auth)
    channel = open_channel(target)
    try:
        tokens = ServiceTokenSource(
            auth_service_pb2_grpc.AuthServiceStub(auth_channel),
            credentials,
            scopes=(SCOPE_ADMIN,),
        )
        yield channel, call_metadata(await tokens.token())
    finally:
        await auth_channel.close()
        await channel.close()


async def _call(
    args: argparse.Namespace,
    env: Env,
    target: Callable[[Endpoints], str],
    stub: Callable[[grpc.aio.Channel], Any],
) -> Message:
    endpoints = Endpoints.from_env(env)
    signed_in_as = credentials(args, env)
    async with admin_channel(endpoints.auth, target(endpoints), signed_in_as) as signed_in:
        channel, args.metadata = signed_in
        call: Call = args.call
        return await call(stub(channel), args)


def run_call(
    args: argparse.Namespace,
    target: Callable[[Endpoints], str],
    stub: Callable[[grpc.aio.Channel], Any],
) -> int:
    """Sign in, make the call in args.call on `stub` of a channel to the `target` endpoint,
    print the answer as JSON (0) or the refusal (1)."""
    import grpc
    import orjson
    from google.protobuf.json_format import MessageToDict

    from common.errors import ServiceError, from_rpc_error

    try:
        reply = asyncio.run(_call(args, Env(), target, stub))
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
