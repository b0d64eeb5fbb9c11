"""The uvicorn internals edge.ws_protocol relies on, checked so that an upgrade that changes them
fails here, loudly and by name, instead of breaking /ws at run time.

FanoutProtocol subclasses uvicorn's private WebSocketsSansIOProtocol: it overrides some of its
methods (calling the originals), copies one (run_asgi), and reads or replaces attributes the
original sets. Each check below names what changed and where to look. When a check fails after
an upgrade: read the new uvicorn source of the member named, adapt edge/ws_protocol.py, run
tests/edge/ws/test_ws_fanout.py (the real path), then update the expectation here and
UVICORN_RANGE with the pyproject.toml pin.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import inspect
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from websockets.datastructures import Headers
from websockets.server import ServerProtocol

from edge import ws_protocol
from edge.ws_protocol import FanoutProtocol

ROOT = Path(__file__).resolve().parents[3]
PRIVATE_MODULE = "uvicorn.protocols.websockets.websockets_sansio_impl"
PRIVATE_CLASS = "WebSocketsSansIOProtocol"
_FIX = (
    "edge/ws_protocol.py depends on it: read uvicorn's new source, adapt FanoutProtocol, run "
    "tests/edge/ws/test_ws_fanout.py, then update this test and UVICORN_RANGE with the pin."
)

# Methods FanoutProtocol overrides or calls, with the parameters it relies on
# (name, default; inspect.Parameter.empty for none).
_EMPTY = inspect.Parameter.empty
METHODS: dict[str, tuple[tuple[str, object], ...]] = {
    "__init__": (
        ("self", _EMPTY),
        ("config", _EMPTY),
        ("server_state", _EMPTY),
        ("app_state", _EMPTY),
        ("_loop", None),
    ),
    "handle_connect": (("self", _EMPTY), ("event", _EMPTY)),
    "pause_writing": (("self", _EMPTY),),
    "resume_writing": (("self", _EMPTY),),
    "send_receive_event_to_app": (("self", _EMPTY),),
    "connection_lost": (("self", _EMPTY), ("exc", _EMPTY)),
    "run_asgi": (("self", _EMPTY),),
    "keepalive_timeout": (("self", _EMPTY),),
    "shutdown": (("self", _EMPTY),),
    "send_500_response": (("self", _EMPTY),),
    "receive": (("self", _EMPTY),),
    "send": (("self", _EMPTY), ("message", _EMPTY)),
}
COROUTINES = ("run_asgi", "receive", "send")

# Fingerprints of the uvicorn methods FanoutProtocol copies or extends, as released in the
# pinned range: run_asgi is copied (a parked connection must stay open when the app returns);
# the others run first in FanoutProtocol's override, which then relies on what they leave behind.
FINGERPRINTS = {
    "run_asgi": "632f86c7cd771ab9",
    "send_receive_event_to_app": "935390da9a9c065f",
    "handle_connect": "fa2597da918de20a",
    "connection_lost": "44a325646ee17ef3",
    "keepalive_timeout": "03c76d1dbe0f2e10",
    "shutdown": "47ea7a1725b19a87",
}

# Instance attributes FanoutProtocol reads, replaces or deletes, set by uvicorn's __init__.
INIT_ATTRIBUTES = (
    "app",
    "loop",
    "logger",
    "transport",
    "queue",
    "writable",
    "conn",
    "close_sent",
    "close_timer",
    "close_timeout",
    "read_paused",
    "handshake_complete",
    "frames",
)
# Set by handle_connect and dropped from the instance's __dict__ when a connection is parked:
# they must stay plain instance attributes.
CONNECT_ATTRIBUTES = ("scope", "request", "response")
# Members FanoutProtocol adds: uvicorn must not define them, or it would call ours instead.
ADDED = ("write_frame", "park", "close", "parked", "paused")


def _base() -> type[Any]:
    module = pytest.importorskip(PRIVATE_MODULE, reason=f"uvicorn removed {PRIVATE_MODULE}")
    base = getattr(module, PRIVATE_CLASS, None)
    assert base is not None, f"uvicorn no longer defines {PRIVATE_MODULE}.{PRIVATE_CLASS}. {_FIX}"
    assert isinstance(base, type)
    return base


def _fingerprint(function: Any) -> str:
    source = textwrap.dedent(inspect.getsource(function))
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def _pin() -> Requirement:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = [Requirement(d) for d in project["dependencies"] if Requirement(d).name == "uvicorn"]
    assert len(pins) == 1, "pyproject.toml must list uvicorn exactly once"
    return pins[0]


def test_fanout_protocol_subclasses_uvicorns_private_protocol() -> None:
    base = _base()
    assert issubclass(FanoutProtocol, base), (
        f"FanoutProtocol must extend {PRIVATE_CLASS}: edge.server passes it as uvicorn's ws class"
    )


def test_installed_uvicorn_is_in_the_range_the_protocol_was_written_for() -> None:
    installed = Version(importlib.metadata.version("uvicorn"))
    pin = _pin()
    written_for = SpecifierSet(ws_protocol.UVICORN_RANGE)
    assert pin.specifier == written_for, (
        f"pyproject.toml pins {pin}, but edge/ws_protocol.py was written for uvicorn"
        f"{ws_protocol.UVICORN_RANGE}: change both together, after checking the subclass"
    )
    assert any(s.operator in ("<", "<=", "==", "~=") for s in pin.specifier), (
        "the uvicorn pin needs an upper bound: FanoutProtocol extends a private class"
    )
    assert installed in pin.specifier, (
        f"uvicorn {installed} is installed, outside {pin.specifier}, the range "
        f"edge/ws_protocol.py was written for. {_FIX}"
    )


@pytest.mark.parametrize("name", sorted(METHODS))
def test_methods_it_overrides_or_calls_keep_their_signature(name: str) -> None:
    base = _base()
    method = base.__dict__.get(name)
    assert method is not None, f"uvicorn's {PRIVATE_CLASS}.{name} is gone. {_FIX}"
    parameters = tuple((p.name, p.default) for p in inspect.signature(method).parameters.values())
    assert parameters == METHODS[name], (
        f"uvicorn's {PRIVATE_CLASS}.{name} changed its parameters: {parameters}, "
        f"expected {METHODS[name]}. {_FIX}"
    )
    assert inspect.iscoroutinefunction(method) == (name in COROUTINES), (
        f"uvicorn's {PRIVATE_CLASS}.{name} changed between a coroutine and a plain method. {_FIX}"
    )


@pytest.mark.parametrize("name", sorted(FINGERPRINTS))
def test_methods_it_copies_or_extends_are_unchanged(name: str) -> None:
    found = _fingerprint(_base().__dict__[name])
    assert found == FINGERPRINTS[name], (
        f"uvicorn's {PRIVATE_CLASS}.{name} changed (fingerprint {found}, expected "
        f"{FINGERPRINTS[name]}); FanoutProtocol.{name} copies or extends it. {_FIX}"
    )


def test_members_it_adds_are_not_uvicorns() -> None:
    base = _base()
    clashes = [name for name in ADDED if hasattr(base, name)]
    assert not clashes, (
        f"uvicorn's {PRIVATE_CLASS} now defines {clashes}, which FanoutProtocol defines for the "
        f"fan-out: uvicorn would call ours. {_FIX}"
    )


async def test_attributes_it_uses_are_set_by_uvicorns_constructor() -> None:
    import uvicorn
    from uvicorn.server import ServerState

    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    base = _base()
    protocol = base(
        config=uvicorn.Config(app, ws=FanoutProtocol, log_config=None),
        server_state=ServerState(),
        app_state={},
        _loop=asyncio.get_running_loop(),
    )
    missing = [name for name in INIT_ATTRIBUTES if name not in vars(protocol)]
    assert not missing, f"uvicorn's {PRIVATE_CLASS}.__init__ no longer sets {missing}. {_FIX}"
    assert isinstance(protocol.queue, asyncio.Queue), f"{PRIVATE_CLASS}.queue changed. {_FIX}"
    assert isinstance(protocol.writable, asyncio.Event), f"{PRIVATE_CLASS}.writable changed. {_FIX}"
    assert isinstance(protocol.frames, list), f"{PRIVATE_CLASS}.frames changed. {_FIX}"
    assert isinstance(protocol.conn, ServerProtocol), (
        f"{PRIVATE_CLASS}.conn is no longer a websockets ServerProtocol. {_FIX}"
    )
    properties = [n for n in CONNECT_ATTRIBUTES if isinstance(getattr(base, n, None), property)]
    assert not properties, f"{PRIVATE_CLASS} made {properties} properties. {_FIX}"


def test_websockets_calls_it_makes_exist() -> None:
    # FanoutProtocol.close writes a close frame through the sans-I/O connection, and park()
    # clears the handshake request's headers.
    for name in ("send_close", "data_to_send"):
        assert callable(getattr(ServerProtocol, name, None)), (
            f"websockets' ServerProtocol.{name} is gone. {_FIX}"
        )
    close = inspect.signature(ServerProtocol.send_close).parameters
    assert list(close)[:3] == ["self", "code", "reason"], (
        f"websockets' ServerProtocol.send_close changed its parameters. {_FIX}"
    )
    assert callable(getattr(Headers, "clear", None)), f"websockets' Headers.clear is gone. {_FIX}"
