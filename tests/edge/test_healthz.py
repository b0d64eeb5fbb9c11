"""/healthz is the edge's readiness: 200 while serving, 503 once it drains on SIGTERM (the flag
EdgeServer.handle_exit sets), and that 503 says when to try again like every other one."""

from __future__ import annotations

import httpx

from tests.conftest import StackFactory
from tests.support.stack import edge_state


async def test_healthz_answers_503_with_retry_after_while_shutting_down(
    stack_factory: StackFactory,
) -> None:
    async with (
        stack_factory() as stack,
        httpx.AsyncClient(base_url=stack.edge_url, timeout=15) as http,
    ):
        serving = await http.get("/healthz")
        assert serving.status_code == 200
        assert serving.json()["status"] == "ok"
        assert "retry-after" not in serving.headers
        edge_state(stack).shutting_down = True
        draining = await http.get("/healthz")
    assert draining.status_code == 503
    assert draining.json()["status"] == "shutting_down"
    assert int(draining.headers["retry-after"]) >= 1
