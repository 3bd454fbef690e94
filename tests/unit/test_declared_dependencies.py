"""What serving needs is declared, not left to whatever else happens to pull it in."""

from __future__ import annotations

import importlib.metadata
import re


def declared() -> set[str]:
    """The names of the distribution's unconditional requirements (no extra)."""
    names = set()
    for requirement in importlib.metadata.requires("connector-manager") or []:
        if "extra ==" not in requirement:
            names.add(re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower())
    return names


def test_sniffio_is_a_dependency_of_serving() -> None:
    # without it httpcore retries a failing import at every lock it makes: the OAuth client's
    # connection pool (token refreshes, code exchanges) ran at half speed under concurrency
    assert "sniffio" in declared()
