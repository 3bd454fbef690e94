"""Entry points: the Starlette HTTP API, the CLI, background workers and the composition root."""
