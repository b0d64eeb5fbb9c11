"""Client channels and call metadata for calls between services."""

from __future__ import annotations

import json

import grpc

from common.logs import REQUEST_ID_HEADER, new_request_id, request_id_var

# Reads may be retried on UNAVAILABLE; writes are retried only by callers that send an
# idempotency key.
_SERVICE_CONFIG = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [
                    {"service": "scoreboard.leaderboard.v1.LeaderboardService"},
                    {"service": "scoreboard.auth.v1.AuthService", "method": "GetJwks"},
                    {"service": "scoreboard.score.v1.ScoreService", "method": "ListActions"},
                ],
                "retryPolicy": {
                    "maxAttempts": 3,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "0.5s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
    }
)


def open_channel(target: str) -> grpc.aio.Channel:
    """A channel that balances per call over every address of a (headless) DNS name."""
    return grpc.aio.insecure_channel(
        target,
        options=[
            ("grpc.service_config", _SERVICE_CONFIG),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 1),
            # Keep pinging through idle hours (the default stops after two pings without data,
            # and a long-lived stream would not notice a server that vanished).
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.enable_retries", 1),
            # A restarted server is found again within about a second: gRPC's default backoff
            # grows to two minutes, which kept the edge answering 503 for seconds after a
            # score_service restart.
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.min_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 1_000),
        ],
    )


def call_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """Authorization plus the current request id, so logs of every hop share it."""
    request_id = request_id_var.get() or new_request_id()
    items: list[tuple[str, str]] = [(REQUEST_ID_HEADER, request_id)]
    if token:
        items.append(("authorization", f"Bearer {token}"))
    return tuple(items)
