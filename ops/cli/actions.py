"""`scoreboard actions list|create|update`: manage the action catalog through ScoreService.

The command signs in as a service account with the admin scope: its client id and secret come
from SCOREBOARD_CLIENT_ID and SCOREBOARD_CLIENT_SECRET (or --client-id / --client-secret-file;
never a secret flag, which other users of the machine can read). It asks auth_service
(SCOREBOARD_AUTH_ADDR) for a token and calls ListActions, CreateAction and UpdateAction on
score_service (SCOREBOARD_SCORE_ADDR), as any other client would. score_service audits every
change under the account's name. Refusals print their reason and exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import grpc
import orjson

from common.auth.principal import SCOPE_ADMIN
from common.auth.service_token import ServiceTokenSource
from common.config import ClientCredentials, ConfigError, Endpoints, Env
from common.errors import ServiceError, from_rpc_error
from common.grpc_client import call_metadata, open_channel
from ops.cli.account import add_account_command
from scoreboard.auth.v1 import auth_service_pb2_grpc
from scoreboard.score.v1 import score_service_pb2 as pb
from scoreboard.score.v1 import score_service_pb2_grpc

CALL_TIMEOUT = 10.0
_FIELDS = (
    "name",
    "description",
    "base_points",
    "multiplier",
    "daily_limit",
    "cooldown",
    "min_duration",
)


def register(sub: Any) -> None:
    """Add `actions` and its commands to the `scoreboard` parser's subcommands."""
    actions = add_account_command(
        sub, "actions", "list, create or change catalog actions (admin service account)", __doc__
    )
    verbs = actions.add_subparsers(dest="verb", required=True)
    listing = verbs.add_parser("list", help="show the catalog, inactive actions included")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    create = verbs.add_parser("create", help="add an action")
    create.add_argument("action_id")
    create.add_argument("--name", required=True)
    create.add_argument("--base-points", type=int, required=True)
    _definition_options(create)
    create.add_argument("--ticket", action="store_true", help="completions need a ticket")
    create.add_argument("--inactive", action="store_true", help="create it switched off")
    update = verbs.add_parser("update", help="change an action (only the options given)")
    update.add_argument("action_id")
    update.add_argument("--name")
    update.add_argument("--base-points", type=int)
    _definition_options(update)
    ticket = update.add_mutually_exclusive_group()
    ticket.add_argument("--ticket", dest="ticket", action="store_true", default=None)
    ticket.add_argument("--no-ticket", dest="ticket", action="store_false")
    active = update.add_mutually_exclusive_group()
    active.add_argument("--activate", dest="active", action="store_true", default=None)
    active.add_argument("--deactivate", dest="active", action="store_false")
    actions.set_defaults(handler=run)


def _definition_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--description")
    parser.add_argument("--multiplier", type=float, help="difficulty multiplier (default 1)")
    parser.add_argument("--daily-limit", type=int, help="completions counted per UTC day")
    parser.add_argument("--cooldown", type=int, help="seconds between two completions")
    parser.add_argument("--min-duration", type=int, help="seconds from StartAction (tickets)")


def _credentials(args: argparse.Namespace, env: Env) -> ClientCredentials:
    client_id = args.client_id or env.required("CLIENT_ID")
    if args.client_secret_file is None:
        return ClientCredentials(client_id, env.required("CLIENT_SECRET"))
    try:
        secret = args.client_secret_file.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {args.client_secret_file}: {exc.strerror}") from None
    if not secret:
        raise ConfigError(f"{args.client_secret_file} is empty")
    return ClientCredentials(client_id, secret)


def run(args: argparse.Namespace) -> int:
    env = Env()
    credentials = _credentials(args, env)
    endpoints = Endpoints.from_env(env)
    try:
        return asyncio.run(_run(args, credentials, endpoints))
    except ServiceError as exc:
        print(f"error: {exc.reason}: {exc.message}", file=sys.stderr)
        return 1


async def _run(args: argparse.Namespace, credentials: ClientCredentials, where: Endpoints) -> int:
    auth_channel = open_channel(where.auth)
    score_channel = open_channel(where.score)
    try:
        source = ServiceTokenSource(
            auth_service_pb2_grpc.AuthServiceStub(auth_channel), credentials, scopes=(SCOPE_ADMIN,)
        )
        metadata = call_metadata(await source.token())
        score = score_service_pb2_grpc.ScoreServiceStub(score_channel)
        try:
            listed = await score.ListActions(
                pb.ListActionsRequest(include_inactive=True),
                metadata=metadata,
                timeout=CALL_TIMEOUT,
            )
            if args.verb == "list":
                _print_list(list(listed.actions), as_json=args.json)
                return 0
            if args.verb == "create":
                created = await score.CreateAction(
                    pb.CreateActionRequest(action=_new_action(args)),
                    metadata=metadata,
                    timeout=CALL_TIMEOUT,
                )
                print(f"created {created.action.action_id}: {_summary(created.action)}")
                return 0
            current = next((a for a in listed.actions if a.action_id == args.action_id), None)
            if current is None:
                print(f"error: ACTION_NOT_FOUND: no action {args.action_id}", file=sys.stderr)
                return 1
            updated = await score.UpdateAction(
                pb.UpdateActionRequest(action=_changed_action(current, args)),
                metadata=metadata,
                timeout=CALL_TIMEOUT,
            )
            print(f"updated {updated.action.action_id}: {_summary(updated.action)}")
            return 0
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from None
    finally:
        await auth_channel.close()
        await score_channel.close()


def _apply(action: pb.Action, args: argparse.Namespace) -> None:
    values = {name: getattr(args, name, None) for name in _FIELDS}
    if values["name"] is not None:
        action.name = values["name"]
    if values["description"] is not None:
        action.description = values["description"]
    if values["base_points"] is not None:
        action.base_points = values["base_points"]
    if values["multiplier"] is not None:
        action.difficulty_multiplier = values["multiplier"]
    if values["daily_limit"] is not None:
        action.daily_limit = values["daily_limit"]
    if values["cooldown"] is not None:
        action.cooldown.seconds = values["cooldown"]
    if values["min_duration"] is not None:
        action.min_duration.seconds = values["min_duration"]


def _new_action(args: argparse.Namespace) -> pb.Action:
    action = pb.Action(
        action_id=args.action_id,
        difficulty_multiplier=1.0,
        daily_limit=1,
        requires_ticket=args.ticket,
        active=not args.inactive,
    )
    _apply(action, args)
    return action


def _changed_action(current: pb.Action, args: argparse.Namespace) -> pb.Action:
    action = pb.Action()
    action.CopyFrom(current)
    action.ClearField("remaining_today")
    action.ClearField("available_time")
    _apply(action, args)
    if args.ticket is not None:
        action.requires_ticket = args.ticket
    if args.active is not None:
        action.active = args.active
    return action


def _as_dict(action: pb.Action) -> dict[str, object]:
    return {
        "actionId": action.action_id,
        "name": action.name,
        "description": action.description,
        "basePoints": action.base_points,
        "difficultyMultiplier": action.difficulty_multiplier,
        "points": action.points,
        "dailyLimit": action.daily_limit,
        "cooldownSeconds": action.cooldown.seconds,
        "requiresTicket": action.requires_ticket,
        "minDurationSeconds": action.min_duration.seconds,
        "active": action.active,
    }


def _summary(action: pb.Action) -> str:
    return (
        f"{action.points} points ({action.base_points} x {action.difficulty_multiplier:g}),"
        f" {action.daily_limit}/day, cooldown {action.cooldown.seconds}s,"
        f" ticket {'yes' if action.requires_ticket else 'no'},"
        f" {'active' if action.active else 'inactive'}"
    )


def _print_list(actions: list[pb.Action], *, as_json: bool) -> None:
    if as_json:
        for action in actions:
            print(orjson.dumps(_as_dict(action)).decode())
        return
    header = ("ID", "POINTS", "PER DAY", "COOLDOWN", "TICKET", "ACTIVE", "NAME")
    rows = [
        (
            a.action_id,
            str(a.points),
            str(a.daily_limit),
            f"{a.cooldown.seconds}s",
            "yes" if a.requires_ticket else "no",
            "yes" if a.active else "no",
            a.name,
        )
        for a in actions
    ]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header) - 1)]
    for row in (header, *rows):
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        print("  ".join([*cells, row[-1]]))
