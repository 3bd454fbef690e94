"""Generated tests against the running API (schemathesis): ``scripts/fuzz-api``."""
