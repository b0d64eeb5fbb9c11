"""The JSON envelope, the mapping from the error contract to HTTP statuses, and the time format
every response and WebSocket message uses."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import grpc
import orjson
from starlette.responses import Response

from common.errors import Reason, ServiceError

_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


def iso(dt: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a Z: 2024-05-01T12:00:00.000Z. A naive datetime is
    UTC (what Timestamp.ToDatetime() gives), never the host's local time."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def ok(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> JSON:
    return JSON({"success": True, "data": data}, status_code=status, headers=headers)


def error(status: int, message: str, code: str, headers: Mapping[str, str] | None = None) -> JSON:
    return JSON(
        {"success": False, "error": message, "code": code}, status_code=status, headers=headers
    )


def from_service_error(exc: ServiceError) -> JSON:
    status = _STATUS.get(exc.code, 500)
    headers: dict[str, str] = {}
    retry = exc.metadata.get("retry_after")
    if retry is not None and retry.isdigit():
        headers["Retry-After"] = retry
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="scoreboard"'
    message = exc.message if status < 500 else _server_message(exc)
    code = exc.reason if status < 500 or exc.reason == Reason.UNAVAILABLE else Reason.INTERNAL
    return error(status, message, str(code), headers)


def _server_message(exc: ServiceError) -> str:
    if exc.code == grpc.StatusCode.UNAVAILABLE:
        return "A service is temporarily unavailable. Try again shortly."
    if exc.code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return "The request timed out. Try again."
    return "Internal error."
