"""Connection strings fit for a message a person reads."""

from __future__ import annotations

import re

_USER_INFO = re.compile(r"//[^@/]*@")


def redact_url(url: str) -> str:
    """User info hidden and the query (which may carry credentials) dropped; works for the
    multi-host URLs of MongoDB too."""
    hidden = _USER_INFO.sub("//***@", url, count=1)
    return hidden.split("?", 1)[0]
