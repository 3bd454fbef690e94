"""Integration tests: services and adapters against real (local) servers."""
