"""The error contract (DESIGN decision 8): canonical gRPC codes with a google.rpc.Status that
carries an ErrorInfo (stable reason, domain). Servicers raise ServiceError; the error interceptor
turns it into the status; clients turn the status back into a ServiceError."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

DOMAIN = "scoreboard"
# What a refusal for a passing fault (UNAVAILABLE, DEADLINE_EXCEEDED) tells the caller to wait,
# in seconds, as ErrorInfo metadata "retry_after" (the edge's Retry-After).
RETRY_AFTER_SECONDS = 1
_RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


class Reason(StrEnum):
    """Stable machine-readable reasons. Never rename one: clients match on them."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    TOKEN_INVALID = "TOKEN_INVALID"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    TOKEN_REVOKED = "TOKEN_REVOKED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    USERNAME_TAKEN = "USERNAME_TAKEN"
    REFRESH_TOKEN_INVALID = "REFRESH_TOKEN_INVALID"
    REFRESH_TOKEN_REUSED = "REFRESH_TOKEN_REUSED"
    LOGIN_RATE_LIMITED = "LOGIN_RATE_LIMITED"
    REGISTRATION_RATE_LIMITED = "REGISTRATION_RATE_LIMITED"
    RATE_LIMITED = "RATE_LIMITED"
    ACTION_NOT_FOUND = "ACTION_NOT_FOUND"
    ACTION_INACTIVE = "ACTION_INACTIVE"
    ACTION_EXISTS = "ACTION_EXISTS"
    DAILY_LIMIT_REACHED = "DAILY_LIMIT_REACHED"
    COOLDOWN_ACTIVE = "COOLDOWN_ACTIVE"
    IDEMPOTENCY_CONFLICT = "IDEMPOTENCY_CONFLICT"
    CLIENT_POINTS_REFUSED = "CLIENT_POINTS_REFUSED"
    TICKET_REQUIRED = "TICKET_REQUIRED"
    TICKET_INVALID = "TICKET_INVALID"
    TICKET_USED = "TICKET_USED"
    TICKET_TOO_EARLY = "TICKET_TOO_EARLY"
    TICKET_EXPIRED = "TICKET_EXPIRED"
    TICKET_MISMATCH = "TICKET_MISMATCH"
    USER_NOT_FOUND = "USER_NOT_FOUND"
    USER_BANNED = "USER_BANNED"
    USER_NOT_BANNED = "USER_NOT_BANNED"
    LEDGER_ENTRY_NOT_FOUND = "LEDGER_ENTRY_NOT_FOUND"
    LEDGER_ENTRY_NOT_VOIDABLE = "LEDGER_ENTRY_NOT_VOIDABLE"
    LEDGER_ENTRY_ALREADY_VOIDED = "LEDGER_ENTRY_ALREADY_VOIDED"
    NEGATIVE_TOTAL = "NEGATIVE_TOTAL"
    NOT_FOUND = "NOT_FOUND"
    # Boards and periods (issue 17).
    BOARD_EXISTS = "BOARD_EXISTS"
    BOARD_HAS_SCORES = "BOARD_HAS_SCORES"
    PERIOD_NOT_CLOSED = "PERIOD_NOT_CLOSED"
    NO_OPEN_PERIOD = "NO_OPEN_PERIOD"
    PERIOD_ALREADY_CLOSED = "PERIOD_ALREADY_CLOSED"
    VALUE_OUT_OF_BOUNDS = "VALUE_OUT_OF_BOUNDS"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    INTERNAL = "INTERNAL"


class ServiceError(Exception):
    """A refusal with a canonical code, a stable reason and a message fit for the caller."""

    def __init__(
        self,
        code: grpc.StatusCode,
        reason: Reason | str,
        message: str,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = str(reason)
        self.message = message
        self.metadata = dict(metadata or {})

    def __repr__(self) -> str:
        return f"ServiceError({self.code.name}, {self.reason}, {self.message!r})"


def invalid(message: str, reason: Reason = Reason.INVALID_ARGUMENT) -> ServiceError:
    return ServiceError(grpc.StatusCode.INVALID_ARGUMENT, reason, message)


def precondition(reason: Reason, message: str, **metadata: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.FAILED_PRECONDITION, reason, message, metadata)


def not_found(reason: Reason, message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.NOT_FOUND, reason, message)


def unauthenticated(reason: Reason, message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.UNAUTHENTICATED, reason, message)


def forbidden(message: str, reason: Reason = Reason.PERMISSION_DENIED) -> ServiceError:
    return ServiceError(grpc.StatusCode.PERMISSION_DENIED, reason, message)


def conflict(reason: Reason, message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.ALREADY_EXISTS, reason, message)


def unavailable(message: str, retry_after: int = RETRY_AFTER_SECONDS) -> ServiceError:
    """A dependency (Redis, PostgreSQL, another service) cannot serve the call right now."""
    return ServiceError(
        grpc.StatusCode.UNAVAILABLE,
        Reason.UNAVAILABLE,
        message,
        {"retry_after": str(max(1, retry_after))},
    )


def deadline_exceeded(message: str, retry_after: int = RETRY_AFTER_SECONDS) -> ServiceError:
    return ServiceError(
        grpc.StatusCode.DEADLINE_EXCEEDED,
        Reason.DEADLINE_EXCEEDED,
        message,
        {"retry_after": str(max(1, retry_after))},
    )


def to_status(error: ServiceError) -> grpc.Status:
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=error.metadata)
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(
        code=_CODE_NUMBERS[error.code], message=error.message, details=[detail]
    )
    result: grpc.Status = rpc_status.to_status(status)
    return result


def from_rpc_error(error: grpc.aio.AioRpcError) -> ServiceError:
    """The ServiceError a call failed with; reason defaults to the code's name. UNAVAILABLE and
    DEADLINE_EXCEEDED always carry a retry_after (one made by the channel itself, a refused
    connection or the caller's own deadline, has no ErrorInfo)."""
    code = error.code()
    message = error.details() or code.name
    reason: str = code.name
    metadata: dict[str, str] = {}
    status = rpc_status.from_call(error)
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason = info.reason
                metadata = dict(info.metadata)
    if code in _RETRYABLE:
        metadata.setdefault("retry_after", str(RETRY_AFTER_SECONDS))
    return ServiceError(code, reason, message, metadata)


_CODE_NUMBERS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: code_pb2.OK,
    grpc.StatusCode.CANCELLED: code_pb2.CANCELLED,
    grpc.StatusCode.UNKNOWN: code_pb2.UNKNOWN,
    grpc.StatusCode.INVALID_ARGUMENT: code_pb2.INVALID_ARGUMENT,
    grpc.StatusCode.DEADLINE_EXCEEDED: code_pb2.DEADLINE_EXCEEDED,
    grpc.StatusCode.NOT_FOUND: code_pb2.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS: code_pb2.ALREADY_EXISTS,
    grpc.StatusCode.PERMISSION_DENIED: code_pb2.PERMISSION_DENIED,
    grpc.StatusCode.RESOURCE_EXHAUSTED: code_pb2.RESOURCE_EXHAUSTED,
    grpc.StatusCode.FAILED_PRECONDITION: code_pb2.FAILED_PRECONDITION,
    grpc.StatusCode.ABORTED: code_pb2.ABORTED,
    grpc.StatusCode.OUT_OF_RANGE: code_pb2.OUT_OF_RANGE,
    grpc.StatusCode.UNIMPLEMENTED: code_pb2.UNIMPLEMENTED,
    grpc.StatusCode.INTERNAL: code_pb2.INTERNAL,
    grpc.StatusCode.UNAVAILABLE: code_pb2.UNAVAILABLE,
    grpc.StatusCode.DATA_LOSS: code_pb2.DATA_LOSS,
    grpc.StatusCode.UNAUTHENTICATED: code_pb2.UNAUTHENTICATED,
}
