"""HTTP client adapters (httpx): OAuth providers and other remote services."""
