"""Reading request bodies: JSON only, within the size limit, validated by the route's model."""

from __future__ import annotations

from typing import TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from common.errors import Reason

M = TypeVar("M", bound=BaseModel)
# Fields a client might use to claim points; refused outright (points are computed on the server).
POINT_FIELDS = frozenset({"points", "score", "total", "increment", "newScore", "newTotal", "bonus"})


class HttpError(Exception):
    """An edge-level refusal (before any service is called)."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


async def read_json(request: Request, model: type[M], *, refuse_points: bool = False) -> M:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if (
        not body
        and model.model_fields
        and all(not f.is_required() for f in model.model_fields.values())
    ):
        return model()
    if content_type != "application/json":
        raise HttpError(415, Reason.UNSUPPORTED_MEDIA_TYPE, "send the body as application/json")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise HttpError(400, "INVALID_JSON", "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise HttpError(422, "VALIDATION_FAILED", "the body must be a JSON object")
    if refuse_points:
        claimed = sorted(POINT_FIELDS & data.keys())
        if claimed:
            raise HttpError(
                400,
                Reason.CLIENT_POINTS_REFUSED,
                f"points are computed by the server; remove {', '.join(claimed)}",
            )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise HttpError(
            422, "VALIDATION_FAILED", f"{where}: {first.get('msg', 'invalid')}"
        ) from None
