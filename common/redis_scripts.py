"""Lua scripts over the leaderboard's stored values, put together the same way by every service.

The stored formats have one Lua owner, common/lua/redis_values.lua (ranking members and scores,
user states, competition ranks; common/redis_values.py is its Python twin). A service's script
is loaded with, in this order: `local ASC` (the board's sort order: scores are decoded
differently on a lower-is-better board, so each script is loaded once per order), the service's
constants, that library, then the service's own library and script text. Services keep their
scripts in `<package>/lua/` (package data, as is common/lua/).
"""

from __future__ import annotations

from importlib import resources

LIBRARY = "redis_values"


def lua_text(package: str, name: str) -> str:
    """The text of `<package>/lua/<name>.lua`."""
    return (resources.files(package) / "lua" / f"{name}.lua").read_text()


def script_source(*parts: str, asc: bool, **constants: int) -> str:
    """A script's source for a board of this sort order: `local ASC` and the `constants` (each
    a `local NAME = value`), the shared library, then `parts` in order."""
    head = [f"local ASC = {'true' if asc else 'false'}"]
    head += [f"local {name} = {int(value)}" for name, value in constants.items()]
    return "\n".join([*head, lua_text("common", LIBRARY), *parts])
