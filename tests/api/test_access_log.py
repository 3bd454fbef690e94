"""The access line of each request names the org of its verified token (an API bearer token or
a console session), and none for a request without one."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.api.conftest import Api
from tests.api.test_console_pages import console, sign_in

__all__ = ["console"]  # the fixture, used by name


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [dict(r.fields) for r in caplog.records if r.name == "connector_manager.access"]  # type: ignore[attr-defined]


async def test_the_access_line_names_the_verified_org(console: Api, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="connector_manager.access"):
        await console.client.get("/api/v1/connectors/active", headers=console.user)
        await console.client.get("/api/v1/connectors/active", headers={"Authorization": "Bearer forged"})
        await sign_in(console, console.user_token(org="org-console", admin=True))
        await console.client.get("/admin/")
    seen = [(line["route"], line["status"], line["org"]) for line in access_lines(caplog)]
    assert seen == [
        ("/api/v1/connectors/active", 200, "org-a"),
        ("/api/v1/connectors/active", 401, None),
        ("/admin/signin", 200, None),
        ("/admin/signin", 303, None),  # the session begins with its answer
        ("/admin/", 200, "org-console"),
    ]
