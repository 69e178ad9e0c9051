"""Developer sessions: ``nox -s tests``, ``nox -s lint``, ``nox -s cluster``, ``nox -s ray``.

The torch pin comes first so that pip takes the CPU wheel instead of resolving the bare
``torch>=2.2`` requirement to a multi-GB CUDA build.
"""

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True

TORCH = "torch==2.13.0"


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """Install the package with its test and sklearn extras and run the test suite."""
    session.install(TORCH)
    session.install(".[test,sklearn]")
    session.run("pytest", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """Ruff lint and format check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python="3.11")
def cluster(session: nox.Session) -> None:
    """Multirun through the submitit launcher (``submitit_local``): ``pytest -m cluster``."""
    session.install(TORCH)
    session.install(".[test,cluster]")
    session.run("pytest", "-m", "cluster", *session.posargs)


@nox.session(python="3.11")
def ray(session: nox.Session) -> None:
    """Multirun through the Ray launcher on a local 2-CPU cluster: ``pytest -m ray``.

    The extras go in one ``pip install``: hydra-ray-launcher needs ``cloudpickle<3`` and the
    newest joblib needs ``cloudpickle>=3``, which pip only reconciles (with an older joblib)
    when it resolves them together; ``pip check`` guards that.
    """
    session.install(TORCH)
    session.install(".[test,ray]")
    session.run("python", "-m", "pip", "check")
    session.run(
        "pytest",
        "-m",
        "ray",
        *session.posargs,
        env={"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"},
    )
