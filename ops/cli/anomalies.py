"""`scoreboard anomalies list|review`: score anomalies flagged for admins, through the
AdminService, as an admin service account.

`list` shows the open anomalies, newest first (`--all` adds the reviewed ones, `--user` keeps
one user's); `review` marks one reviewed, with an optional note, in the audit log under the
account's name. Reviewing an anomaly twice changes nothing (its audit_id is then 0).

The account's client id and secret come from SCOREBOARD_CLIENT_ID and SCOREBOARD_CLIENT_SECRET
(or --client-secret-file), the addresses from SCOREBOARD_AUTH_ADDR and SCOREBOARD_SCORE_ADDR.
Answers print as JSON; refusals print their reason and exit 1.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ops.cli.account import TIMEOUT, add_account_command
from ops.cli.admin import list_anomalies, run

if TYPE_CHECKING:
    from google.protobuf.message import Message

    from scoreboard.admin.v1.admin_service_pb2_grpc import AdminServiceAsyncStub


def register(sub: Any) -> None:
    """Add `anomalies` and its commands to the `scoreboard` parser's subcommands."""
    anomalies = add_account_command(
        sub,
        "anomalies",
        "list flagged score anomalies or mark one reviewed (admin service account)",
        __doc__,
    )
    verbs = anomalies.add_subparsers(dest="verb", required=True)
    listing = verbs.add_parser("list", help="open anomalies, newest first")
    # Stored under the names `admin anomalies` gives them: both commands make one call.
    listing.add_argument(
        "--user", dest="user_id", default="", metavar="USER_ID", help="only this user's"
    )
    listing.add_argument(
        "--all", dest="include_reviewed", action="store_true", help="reviewed ones too"
    )
    listing.add_argument("--page-size", type=int, default=0, help="default 50, at most 500")
    listing.add_argument("--page-token", default="", help="next_page_token of the last page")
    listing.set_defaults(handler=run, call=list_anomalies)
    review = verbs.add_parser("review", help="mark an anomaly reviewed (audited)")
    review.add_argument("anomaly_id", type=int)
    review.add_argument("--note", default="", help="what the review found (at most 500 chars)")
    review.set_defaults(handler=run, call=_review)


async def _review(stub: AdminServiceAsyncStub, args: argparse.Namespace) -> Message:
    from scoreboard.admin.v1 import admin_service_pb2 as pb

    request = pb.ReviewAnomalyRequest(anomaly_id=args.anomaly_id, note=args.note)
    return await stub.ReviewAnomaly(request, metadata=args.metadata, timeout=TIMEOUT)
