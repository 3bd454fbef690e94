"""Ports: the protocols the core needs from the outside world, one file each."""
