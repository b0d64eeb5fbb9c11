"""The OpenAPI 3.1 document, generated from the route descriptions and their pydantic models."""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from edge.api import ApiRoute
from edge.schemas import ErrorEnvelope

_REASONS = {
    400: "Bad request (invalid input or a business rule refused it)",
    401: "Missing, invalid, expired or revoked token",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    413: "Body too large",
    415: "Body is not JSON",
    422: "Body does not match the schema",
    429: "Rate limited (see Retry-After)",
    503: "A service is unavailable",
}


def _statuses(route: ApiRoute) -> set[int]:
    """The error statuses a route can answer with: its own, plus what every route with a body
    or a token can get (bad JSON, too large, not JSON, schema; bad token) and 503."""
    statuses = {*route.errors, 503}
    if route.body is not None:
        statuses |= {400, 413, 415, 422}
    if route.auth != "none":
        statuses.add(401)
    return statuses


def build_openapi(routes: list[ApiRoute], *, version: str) -> dict[str, Any]:
    models = {r.body for r in routes if r.body} | {r.response for r in routes if r.response}
    models.add(ErrorEnvelope)
    ordered = sorted(models, key=lambda m: m.__name__)
    refs, defs = models_json_schema(
        [(m, "validation") for m in ordered], ref_template="#/components/schemas/{model}"
    )
    schemas = defs.get("$defs", {})

    def ref(model: Any) -> dict[str, Any]:
        return refs[(model, "validation")]

    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        op: dict[str, Any] = {
            "summary": route.summary,
            "tags": [route.tag],
            "operationId": route.handler.__name__,
            "responses": {},
        }
        if route.description:
            op["description"] = route.description
        if route.auth == "required":
            op["security"] = [{"bearer": []}]
        elif route.auth == "optional":
            op["security"] = [{"bearer": []}, {}]
        if route.params:
            op["parameters"] = [
                {
                    "name": p.name,
                    "in": p.where,
                    "required": p.required or p.where == "path",
                    "description": p.description,
                    "schema": p.schema,
                }
                for p in route.params
            ]
        if route.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": ref(route.body)}},
            }
        success: dict[str, Any] = {"description": "OK"}
        if route.response is not None:
            success["content"] = {"application/json": {"schema": ref(route.response)}}
        op["responses"][str(route.status)] = success
        for status in sorted(_statuses(route)):
            op["responses"][str(status)] = {
                "description": _REASONS.get(status, "Error"),
                "content": {"application/json": {"schema": ref(ErrorEnvelope)}},
            }
        paths.setdefault(route.path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Scoreboard",
            "version": version,
            "description": "A live leaderboard. Errors use the envelope "
            '{"success": false, "error": "...", "code": "REASON"}.',
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }
