"""Constants shared across multiml."""

from __future__ import annotations

TRAIN = "train"
VALID = "valid"
TEST = "test"
PHASES: tuple[str, str, str] = (TRAIN, VALID, TEST)
"""The three data phases, in the order ``'all'`` concatenates them."""
