"""Hydra config groups of multiml (package data; also reachable as ``conf/`` in a checkout)."""
