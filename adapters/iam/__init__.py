"""Identity and access adapters."""
