"""Why a process could not start, when the reason is outside the settings' values."""

from __future__ import annotations


class CouldNotStart(Exception):
    """A directory or file this process cannot use, a port another process holds. The message
    names the path or the port, the operating system's reason and what to do, and never a
    setting's value: the command line prints it as it is, in one line, and exits with 1."""

    @classmethod
    def from_os_error(cls, what: str, exc: OSError, fix: str) -> CouldNotStart:
        """``what`` failed with ``exc``: ``<what> (<the OS's reason>): <fix>``."""
        return cls(f"{what} ({exc.strerror or type(exc).__name__}): {fix}")
