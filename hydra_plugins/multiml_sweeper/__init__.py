"""The multiml Hydra sweeper (``hydra/sweeper=multiml``, the default of ``python -m multiml``)."""
