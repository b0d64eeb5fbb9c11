"""A schema-driven fuzz run: schemathesis generates valid and invalid requests for every
operation of /openapi.json and sends them to the real edge (real services behind it). No answer
may be a 5xx, and every answer must match the document (status documented, content type,
body schema). Bounded: a fixed number of examples per operation and mode."""

from __future__ import annotations

import asyncio
import traceback
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeAlias

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from requests.structures import CaseInsensitiveDict
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from tests.support.clients import Api
from tests.support.forge import Signer, claims
from tests.support.stack import Stack

Case: TypeAlias = schemathesis.Case[Any]
EXAMPLES = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
    unsupported_method,
]


def _fuzz(
    document: dict[str, Any], base_url: str, token_for: Callable[[], str]
) -> tuple[list[str], Counter[tuple[str, int]]]:
    schema = schemathesis.openapi.from_dict(document)

    class Bearer:
        """A fresh token per case (logout revokes the one it is sent), declared to schemathesis
        as real credentials, so its auth checks probe without it."""

        def get(self, case: Case, ctx: schemathesis.AuthContext) -> str:
            return token_for()

        def set(self, case: Case, data: str, ctx: schemathesis.AuthContext) -> None:
            if case.headers is None:
                case.headers = CaseInsensitiveDict()
            case.headers["Authorization"] = f"Bearer {data}"

    schema.auth(refresh_interval=None)(Bearer)
    failures: list[str] = []
    answers: Counter[tuple[str, int]] = Counter()
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        label = operation.label
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Case) -> None:
                response = case.call_and_validate(base_url=base_url, checks=CHECKS)
                answers[(label, response.status_code)] += 1  # noqa: B023 (run before the loop moves on)

            try:
                run()
            except hypothesis.errors.Unsatisfiable:
                continue
            except Exception:
                failures.append(
                    f"{operation.label} [{mode.value}]\n{traceback.format_exc(limit=1)}"
                )
    return failures, answers


# Hypothesis warns when the global `random` state moves while it draws a case; here the stack's
# own event loop (in the main thread) uses `random` meanwhile (retry jitter), not the strategy.
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
async def test_no_server_errors_and_no_schema_violations(
    shared_stack: Stack, api: Api, ours: Signer
) -> None:
    player = await api.register()

    def token_for() -> str:
        return ours.sign(claims(sub=player.user_id, jti=str(uuid.uuid4())))

    document = (await api.http.get("/openapi.json")).json()
    failures, answers = await asyncio.to_thread(_fuzz, document, shared_stack.edge_url, token_for)
    assert failures == [], "\n\n".join(failures)
    operations = {f"{m.upper()} {p}" for p, item in document["paths"].items() for m in item}
    assert {label for label, _ in answers} == operations
    assert sum(answers.values()) >= len(operations) * EXAMPLES
    # With the token, requests got past authentication into every handler that needs one.
    secured = {
        f"{m.upper()} {p}"
        for p, item in document["paths"].items()
        for m, op in item.items()
        if op.get("security") == [{"bearer": []}]
    }
    assert {label for label, status in answers if status != 401} >= secured, answers
