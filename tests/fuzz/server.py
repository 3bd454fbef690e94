"""The API as schemathesis meets it: a real uvicorn server on SQLite, every catalog provider
pointed at a local fake OpenID provider (nothing leaves the machine), fixed signing secrets so
the runner can mint tokens. ``python -m tests.fuzz.server --port P --data-dir D`` prints the
tokens as ``export`` lines, then serves until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from pathlib import Path

import uvicorn
from attrs import evolve

from connector_core.catalog import Catalog, load_default_catalog
from entrypoints.bootstrap import build_container
from entrypoints.http.app import create_app
from entrypoints.http.auth import issue_scoped_token, issue_user_token
from entrypoints.settings import load_settings
from tests.fakes.oauth_provider import FakeOAuthProvider

ORG = "fuzz-org"
ENV = {
    "CM_MASTER_KEY": "fuzz-master-key",
    "CM_JWT_SECRET": "fuzz-user-token-secret-0123456789abcdef",
    "CM_SCOPED_JWT_SECRET": "fuzz-scoped-token-secret-0123456789abcdef",
}


def _catalog(idp: FakeOAuthProvider) -> Catalog:
    entries = []
    for entry in load_default_catalog():
        assert entry.oauth is not None
        oauth = evolve(
            entry.oauth,
            authorize_url=idp.authorize_url,
            token_url=idp.token_url,
            revocation_url=idp.revocation_url,
            jwks_uri=idp.jwks_uri,
            issuer=idp.issuer,
            url_params=(),
        )
        entries.append(evolve(entry, oauth=oauth))
    return Catalog(entries)


def tokens(ttl: int = 24 * 3600) -> dict[str, str]:
    now = int(time.time())
    user, scoped = ENV["CM_JWT_SECRET"], ENV["CM_SCOPED_JWT_SECRET"]

    def user_token(user_id: str, *, admin: bool) -> str:
        return issue_user_token(
            user, user_id=user_id, org_id=ORG, email="fuzz@example.com", admin=admin, ttl=ttl, now=now
        )

    return {
        "CM_FUZZ_ADMIN_TOKEN": user_token("fuzz-admin", admin=True),
        "CM_FUZZ_USER_TOKEN": user_token("fuzz-user", admin=False),
        "CM_FUZZ_SCOPED_TOKEN": issue_scoped_token(scoped, scopes=["fetch:config"], ttl=ttl, now=now, org_id=ORG),
        "CM_FUZZ_SERVICE_TOKEN": issue_scoped_token(scoped, scopes=["fetch:config"], ttl=ttl, now=now),
    }


async def serve(port: int, data_dir: Path) -> None:
    with FakeOAuthProvider() as idp:
        settings = load_settings(env=ENV, storage="sqlite", data_dir=data_dir, run_refresher=False)
        container = await build_container(settings, env=ENV, catalog=_catalog(idp))
        app = create_app(container, close_on_shutdown=True)
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
        server = uvicorn.Server(config)
        for name, value in tokens().items():
            print(f"export {name}={value}")
        sys.stdout.flush()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
        with contextlib.suppress(asyncio.CancelledError):
            await server.serve()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.data_dir))


if __name__ == "__main__":
    main()
