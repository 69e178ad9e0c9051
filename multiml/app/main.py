"""Entry point of ``python -m multiml`` (the Hydra application lands with issue 4)."""

from __future__ import annotations

import sys


def main() -> None:
    """Print a usage line until the Hydra application exists."""
    sys.stdout.write(
        "usage: use the Python API (multiml.StoreGate, multiml.agent...); "
        "the declarative `python -m multiml` app is not available yet\n"
    )
