"""``python -m entrypoints.cli``: the same as the ``connector-manager`` console script."""

from __future__ import annotations

import sys

from entrypoints.cli.main import main

sys.exit(main())
