"""Behind a TLS-terminating ingress the edge learns the scheme from X-Forwarded-Proto, believed
only from the proxies SCOREBOARD_FORWARDED_ALLOW_IPS names. The ingress is never a loopback
peer, so this runs a real uvicorn edge on 127.0.0.1 and connects from 127.0.0.2 (on Linux the
whole 127/8 is local, but a different address): named in the allow-list, its https gets HSTS
and a Secure refresh cookie; not named, neither."""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from common.config import ConfigError, Env
from edge.config import Settings
from tests.conftest import StackFactory
from tests.ops.kustomize import render
from tests.support.stack import Stack

TRUSTED, UNTRUSTED = "127.0.0.2", "127.0.0.3"
HTTPS = {"x-forwarded-proto": "https"}
ROOT = Path(__file__).resolve().parents[2]
# What the edge's settings require besides the one under test.
REQUIRED = {
    "SCOREBOARD_REDIS_URL": "redis://127.0.0.1:6379/0",
    "SCOREBOARD_JWKS_FILE": "/etc/scoreboard/jwks/jwks.json",
    "SCOREBOARD_CLIENT_ID": "edge",
    "SCOREBOARD_CLIENT_SECRET": "secret",
}


@pytest.fixture(scope="module")
async def stack(stack_factory: StackFactory) -> AsyncIterator[Stack]:
    edge = {"trust_forwarded": True, "forwarded_allow_ips": (TRUSTED,)}
    async with stack_factory(edge=edge) as stack:
        yield stack


def _client(stack: Stack, source: str) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(local_address=source)
    return httpx.AsyncClient(base_url=stack.edge_url, transport=transport, timeout=15)


async def _https_session(http: httpx.AsyncClient) -> tuple[httpx.Response, httpx.Response]:
    """A read and a registration, each saying the client spoke https to the ingress."""
    read = await http.get("/api/leaderboard", headers=HTTPS)
    name = f"f{secrets.token_hex(5)}"
    registered = await http.post(
        "/api/auth/register",
        json={"username": name, "password": "correct horse battery"},
        headers=HTTPS,
    )
    assert read.status_code == 200, read.text
    assert registered.status_code == 201, registered.text
    return read, registered


def _refresh_cookie_flags(reply: httpx.Response) -> set[str]:
    (cookie,) = [c for c in reply.headers.get_list("set-cookie") if c.startswith("sb_refresh=")]
    return {part.strip().split("=", 1)[0].lower() for part in cookie.split(";")[1:]}


async def test_a_trusted_proxy_peer_gets_hsts_and_a_secure_cookie(stack: Stack) -> None:
    async with _client(stack, TRUSTED) as http:
        read, registered = await _https_session(http)
    assert read.headers["strict-transport-security"].startswith("max-age=")
    assert registered.headers["strict-transport-security"].startswith("max-age=")
    assert {"secure", "httponly"} <= _refresh_cookie_flags(registered)


async def test_an_untrusted_peer_cannot_claim_https(stack: Stack) -> None:
    async with _client(stack, UNTRUSTED) as http:
        read, registered = await _https_session(http)
    assert "strict-transport-security" not in read.headers
    assert "strict-transport-security" not in registered.headers
    flags = _refresh_cookie_flags(registered)
    assert "httponly" in flags and "secure" not in flags


async def test_by_default_only_loopback_proxies_are_believed(
    stack_factory: StackFactory,
) -> None:
    async with stack_factory(edge={"trust_forwarded": True}) as stack:
        async with _client(stack, TRUSTED) as http:
            remote = await http.get("/api/leaderboard", headers=HTTPS)
        async with _client(stack, "127.0.0.1") as http:
            local = await http.get("/api/leaderboard", headers=HTTPS)
    assert "strict-transport-security" not in remote.headers
    assert local.headers["strict-transport-security"].startswith("max-age=")


def test_the_setting_is_read_and_checked() -> None:
    def settings(value: str) -> Settings:
        return Settings.from_env(Env({**REQUIRED, "SCOREBOARD_FORWARDED_ALLOW_IPS": value}))

    assert Settings.from_env(Env(REQUIRED)).forwarded_allow_ips == ("127.0.0.1", "::1")
    assert settings("10.0.0.0/8, 127.0.0.2").forwarded_allow_ips == ("10.0.0.0/8", "127.0.0.2")
    assert settings("*").forwarded_allow_ips == ("*",)
    with pytest.raises(ConfigError, match="SCOREBOARD_FORWARDED_ALLOW_IPS"):
        settings("10.0.0.0/8,ingress-nginx")


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_the_manifests_trust_the_ingress_pod_network(overlay: str) -> None:
    """Pod addresses of common clusters (kind/flannel, Docker, Calico, GKE, EKS-style CGNAT)."""
    objects = render(ROOT / "k8s" / "overlays" / overlay)
    (edge,) = [
        o
        for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "scoreboard-edge"
    ]
    (container,) = edge["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item["value"] for item in container["env"] if "value" in item}
    settings = Settings.from_env(Env({**REQUIRED, **env}))
    networks = [ipaddress.ip_network(item) for item in settings.forwarded_allow_ips]
    for pod in ("10.244.1.7", "172.17.0.5", "192.168.3.4", "100.96.0.12"):
        assert any(ipaddress.ip_address(pod) in network for network in networks), pod
    assert "*" not in settings.forwarded_allow_ips
