"""Server interceptors, one concern each, in one explicit order (see grpc_server.start_server):
request id -> metrics -> errors -> deadline -> auth. Each handles unary and server-streaming
calls."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar, cast

import grpc
import psycopg
import psycopg_pool
import redis.asyncio as aioredis
from prometheus_client import Counter, Histogram

from common.auth.principal import current_principal_var
from common.auth.tokens import TokenVerifier
from common.errors import (
    Reason,
    ServiceError,
    deadline_exceeded,
    to_status,
    unauthenticated,
    unavailable,
)
from common.logs import REQUEST_ID_HEADER, Throttle, new_request_id, request_id_var

log = logging.getLogger("scoreboard.grpc")

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")
Unary = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]
Streaming = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Any]]
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

RPC_LATENCY = Histogram(
    "scoreboard_grpc_server_handling_seconds",
    "Time to handle a gRPC call (streams: until the stream ends).",
    ["method", "code"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
RPC_STARTED = Counter("scoreboard_grpc_server_started_total", "gRPC calls started.", ["method"])
DEPENDENCY_UNAVAILABLE = Counter(
    "scoreboard_grpc_dependency_unavailable_total",
    "Calls answered UNAVAILABLE because Redis or PostgreSQL could not be reached in time.",
    ["dependency"],
)


def _metadata(context: grpc.aio.ServicerContext[Any, Any], key: str) -> str | None:
    for name, value in context.invocation_metadata() or ():
        if name == key:
            return value.decode() if isinstance(value, bytes) else value
    return None


class _Wrapping(grpc.aio.ServerInterceptor):
    """Wraps the behaviour of unary-unary and unary-stream handlers.

    grpc.aio asks every interceptor for the handler at each call; the wrapped handler of a
    method is built once and reused while the handler it wraps is the same object (the
    servicer's, or the next interceptor's cached one), so a call costs a lookup, not a chain of
    new closures and handler objects."""

    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[object, grpc.RpcMethodHandler[Any, Any]]] = {}

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[_Req, _Resp] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[_Req, _Resp] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(method, handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap(
        self, method: str, handler: grpc.RpcMethodHandler[_Req, _Resp]
    ) -> grpc.RpcMethodHandler[_Req, _Resp]:
        # grpc.aio handlers are coroutines and async generators; the stubs describe sync ones.
        make: Callable[..., grpc.RpcMethodHandler[_Req, _Resp]]
        behavior: Unary | Streaming
        if handler.unary_unary is not None:
            make = grpc.unary_unary_rpc_method_handler
            behavior = self.wrap_unary(method, cast(Unary, handler.unary_unary))
        elif handler.unary_stream is not None:
            make = grpc.unary_stream_rpc_method_handler
            behavior = self.wrap_stream(method, cast(Streaming, handler.unary_stream))
        else:
            return handler
        return make(
            behavior,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def wrap_unary(self, method: str, behavior: Unary) -> Unary:
        raise NotImplementedError

    def wrap_stream(self, method: str, behavior: Streaming) -> Streaming:
        raise NotImplementedError


class RequestIdInterceptor(_Wrapping):
    """Takes the caller's x-request-id (or makes one) so logs of every hop share it."""

    def wrap_unary(self, method: str, behavior: Unary) -> Unary:
        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            request_id_var.set(_request_id(context))
            return await behavior(request, context)

        return call

    def wrap_stream(self, method: str, behavior: Streaming) -> Streaming:
        async def call(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            request_id_var.set(_request_id(context))
            async for item in behavior(request, context):
                yield item

        return call


def _request_id(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    given = _metadata(context, REQUEST_ID_HEADER)
    return given if given and _REQUEST_ID.match(given) else new_request_id()


class MetricsInterceptor(_Wrapping):
    """The method's counter and its OK histogram are looked up once per method (a labels()
    call takes a lock and builds a key); other codes are looked up when they happen."""

    def wrap_unary(self, method: str, behavior: Unary) -> Unary:
        started = RPC_STARTED.labels(method)
        ok = RPC_LATENCY.labels(method, "OK")

        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started.inc()
            start = time.perf_counter()
            try:
                result = await behavior(request, context)
            except BaseException:
                _observe(method, _code_name(context), start)
                raise
            ok.observe(time.perf_counter() - start)
            if log.isEnabledFor(logging.DEBUG):
                _log_call(method, "OK", start)
            return result

        return call

    def wrap_stream(self, method: str, behavior: Streaming) -> Streaming:
        started = RPC_STARTED.labels(method)

        async def call(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            started.inc()
            start = time.perf_counter()
            code = "OK"
            try:
                async for item in behavior(request, context):
                    yield item
            except BaseException:
                code = _code_name(context)
                raise
            finally:
                _observe(method, code, start)

        return call


def _observe(method: str, code: str, start: float) -> None:
    RPC_LATENCY.labels(method, code).observe(time.perf_counter() - start)
    if log.isEnabledFor(logging.DEBUG):
        _log_call(method, code, start)


def _log_call(method: str, code: str, start: float) -> None:
    elapsed = time.perf_counter() - start  # the request id comes from the formatter
    log.debug("rpc", extra={"method": method, "code": code, "ms": round(elapsed * 1000, 2)})


def _code_name(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    return "CANCELLED"


class ErrorInterceptor(_Wrapping):
    """ServiceError -> status with ErrorInfo; Redis or PostgreSQL unreachable or out of its time
    budget -> UNAVAILABLE with a retry_after (a passing fault, logged at most once per
    `log_every` seconds per kind, never with a trace per call); anything unexpected -> INTERNAL,
    logged once with its trace."""

    def __init__(self, log_every: float = 10.0) -> None:
        super().__init__()
        self._warnings = Throttle(log_every)

    def wrap_unary(self, method: str, behavior: Unary) -> Unary:
        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                return await behavior(request, context)
            except Exception as exc:
                await self._abort(method, context, exc)

        return call

    def wrap_stream(self, method: str, behavior: Streaming) -> Streaming:
        async def call(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            try:
                async for item in behavior(request, context):
                    yield item
            except Exception as exc:
                await self._abort(method, context, exc)

        return call

    async def _abort(
        self, method: str, context: grpc.aio.ServicerContext[Any, Any], exc: Exception
    ) -> None:
        if isinstance(exc, grpc.aio.AbortError):
            raise exc
        if isinstance(exc, ServiceError):
            await context.abort_with_status(to_status(exc))
            return
        dependency = _passing_fault(exc)
        if dependency is None:
            log.exception("unhandled error in %s", method)
            await context.abort_with_status(
                to_status(ServiceError(grpc.StatusCode.INTERNAL, Reason.INTERNAL, "internal error"))
            )
            return
        DEPENDENCY_UNAVAILABLE.labels(dependency).inc()
        if self._warnings.due(dependency):
            log.warning("%s unavailable in %s: %r", dependency, method, exc)
        await context.abort_with_status(to_status(unavailable(f"{dependency} is unavailable")))


def _passing_fault(exc: Exception) -> str | None:
    """The dependency a passing fault is about (unreachable, connection lost, out of its time
    budget, no pooled connection free in time), or None when the error is a bug."""
    if isinstance(exc, (aioredis.ConnectionError, aioredis.TimeoutError)):
        return "redis"
    if isinstance(
        exc, (psycopg.OperationalError, psycopg.InterfaceError, psycopg_pool.PoolTimeout)
    ):
        return "database"
    return None


class DeadlineInterceptor(_Wrapping):
    """A call whose caller set no deadline gets `default_seconds`, so no call waits without a
    limit (DESIGN decision 13); when it passes, the call ends with DEADLINE_EXCEEDED. A caller's
    own deadline is left to gRPC. Long-lived streams (WatchTop10) are never limited."""

    def __init__(self, default_seconds: float, long_lived: frozenset[str]) -> None:
        super().__init__()
        self._default = default_seconds
        self._long_lived = long_lived

    def wrap_unary(self, method: str, behavior: Unary) -> Unary:
        if _open_method(method) or method in self._long_lived:
            return behavior
        default = self._default

        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            if context.time_remaining() is not None:
                return await behavior(request, context)
            limit = asyncio.timeout(default)
            try:
                async with limit:
                    return await behavior(request, context)
            except TimeoutError:
                if limit.expired():
                    raise _default_deadline(method, default) from None
                raise

        return call

    def wrap_stream(self, method: str, behavior: Streaming) -> Streaming:
        if _open_method(method) or method in self._long_lived:
            return behavior
        default = self._default

        async def call(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            if context.time_remaining() is not None:
                async for item in behavior(request, context):
                    yield item
                return
            # The limit is on the whole stream (the time spent producing its items).
            end = asyncio.get_running_loop().time() + default
            items = behavior(request, context)
            try:
                while True:
                    limit = asyncio.timeout_at(end)
                    try:
                        async with limit:
                            item = await anext(items)
                    except StopAsyncIteration:
                        return
                    except TimeoutError:
                        if limit.expired():
                            raise _default_deadline(method, default) from None
                        raise
                    yield item
            finally:
                await items.aclose()  # type: ignore[attr-defined]

        return call


def _default_deadline(method: str, seconds: float) -> ServiceError:
    log.warning("call exceeded the default deadline", extra={"method": method, "s": seconds})
    return deadline_exceeded(f"the call did not finish within {seconds:g} seconds")


def _open_method(method: str) -> bool:
    return method.startswith(("/grpc.health.v1.Health/", "/grpc.reflection."))


class AuthInterceptor(_Wrapping):
    """Verifies the bearer token of every call and makes the caller available to the servicer
    as common.auth.principal.current_principal(). The listed public methods also take calls without
    a token (a token they are sent is still verified, so they may trust a service caller);
    health and reflection take any call."""

    def __init__(self, verifier: TokenVerifier, public_methods: frozenset[str]) -> None:
        super().__init__()
        self._verifier = verifier
        self._public = public_methods

    def wrap_unary(self, method: str, behavior: Unary) -> Unary:
        if self._open_method(method):
            return behavior
        optional = method in self._public

        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            await self._authenticate(context, optional=optional)
            return await behavior(request, context)

        return call

    def wrap_stream(self, method: str, behavior: Streaming) -> Streaming:
        if self._open_method(method):
            return behavior
        optional = method in self._public

        async def call(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            await self._authenticate(context, optional=optional)
            async for item in behavior(request, context):
                yield item

        return call

    @staticmethod
    def _open_method(method: str) -> bool:
        return method.startswith(("/grpc.health.v1.Health/", "/grpc.reflection."))

    async def _authenticate(
        self, context: grpc.aio.ServicerContext[Any, Any], *, optional: bool = False
    ) -> None:
        header = _metadata(context, "authorization")
        if header is None:
            if optional:
                current_principal_var.set(None)
                return
            raise unauthenticated(Reason.UNAUTHENTICATED, "a bearer token is required")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise unauthenticated(
                Reason.UNAUTHENTICATED, "the authorization must be a bearer token"
            )
        current_principal_var.set(await self._verifier.verify(token.strip()))
