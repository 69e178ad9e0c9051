"""The Hydra application behind ``python -m multiml``."""
