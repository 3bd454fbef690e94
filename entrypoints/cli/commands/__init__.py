"""Command groups of ``connector-manager``: each module defines ``register(commands)``
(see :mod:`entrypoints.cli.main`)."""
