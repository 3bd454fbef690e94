"""The embedded default installs no driver of the other backends (``./scripts/serve`` installs
what serving needs): starting the CLI must not import one. A module-level import of the etcd
factory in the keys command once made ``serve`` fail on a fresh copy (ModuleNotFoundError:
aetcd), caught only by the README walkthrough test."""

from __future__ import annotations

import subprocess
import sys

DRIVERS = ("aetcd", "pymongo", "confluent_kafka", "redis")


def test_building_the_cli_imports_no_backend_driver() -> None:
    # parser() imports every command module, as every run of the CLI does
    probe = (
        "import sys\n"
        "from entrypoints.cli.main import parser\n"
        "parser()\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({DRIVERS!r})))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout
