"""``python -m multiml``: entry point of the Hydra application."""

from multiml.app.main import main

if __name__ == "__main__":
    main()
