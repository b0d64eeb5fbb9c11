"""The documentation stays navigable and true: every relative link in README.md and docs/ leads to
a file (and heading) that exists, the README stays a short front page, and every SCOREBOARD_*
setting the code reads is listed in docs/configuration.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
CONFIGURATION = DOCS / "configuration.md"
README_MAX_LINES = 400

# The packages whose code reads settings (generated code and tests excluded).
_SOURCES = (
    "auth_service",
    "score_service",
    "leaderboard_service",
    "stream_service",
    "edge",
    "common",
    "ops",
    "bench",
    "examples",
    "tools",
)
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
_ENV_CALL = re.compile(
    r"\b(?:env|env_reader|Env\(\))\.(?:raw|text|optional|required|integer|number|flag|items|path)"
    r"\(\s*\"([A-Z][A-Z0-9_]*)\""
)
_SETTING = re.compile(r"\bSCOREBOARD_[A-Z0-9_]*[A-Z0-9]\b")


def _documents() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def _prose(text: str) -> str:
    """The text without fenced code blocks and code spans, where brackets are not links."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = _CODE_SPAN.sub(lambda m: m.group(0).strip("`"), heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for match in _HEADING.finditer(_FENCE.sub("", path.read_text(encoding="utf-8"))):
        slug = _slug(match.group(1))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _broken_links(path: Path) -> list[str]:
    broken = []
    for target in _LINK.findall(_prose(path.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
            continue  # http:, https:, mailto: ...
        file_part, _, anchor = target.partition("#")
        linked = path if not file_part else (path.parent / file_part).resolve()
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(f"{target}: no heading #{anchor} in {linked.relative_to(ROOT)}")
    return broken


@pytest.mark.parametrize("path", _documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path: Path) -> None:
    assert _broken_links(path) == []


def test_the_readme_is_a_front_page() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines < README_MAX_LINES, f"README.md has {lines} lines; move detail into docs/"


def test_the_readme_links_every_docs_page() -> None:
    linked = {
        (README.parent / target.partition("#")[0]).resolve()
        for target in _LINK.findall(_prose(README.read_text(encoding="utf-8")))
    }
    assert sorted(p.name for p in DOCS.rglob("*.md") if p.resolve() not in linked) == []


def _settings_read_by_the_code() -> dict[str, str]:
    found: dict[str, str] = {}
    for package in _SOURCES:
        for source in sorted((ROOT / package).rglob("*.py")):
            text = source.read_text(encoding="utf-8")
            names = [f"SCOREBOARD_{n}" for n in _ENV_CALL.findall(text)]
            names += _SETTING.findall(text)
            for name in names:
                found.setdefault(name, str(source.relative_to(ROOT)))
    return found


def test_every_setting_is_documented() -> None:
    documented = set(_SETTING.findall(CONFIGURATION.read_text(encoding="utf-8")))
    read = _settings_read_by_the_code()
    assert len(read) > 50, "the scan of the code found too few settings to be right"
    missing = {name: where for name, where in read.items() if name not in documented}
    assert missing == {}, "add these to docs/configuration.md"


def test_the_slugs_follow_github() -> None:
    assert _slug("Viewers on an idle stack (`bench.viewers`)") == (
        "viewers-on-an-idle-stack-benchviewers"
    )
    assert _slug("make bench: the capacity targets") == "make-bench-the-capacity-targets"
    assert _slug("WebSocket `/ws`") == "websocket-ws"
    assert _slug("score_service") == "score_service"
