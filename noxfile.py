"""Developer sessions: `nox` runs the tests; `nox -s lint|smoke|bench|nightly` the rest.

Python versions come from pyproject's classifiers; extra arguments after `--` are
forwarded (`nox -s tests -- -k runner`, `nox -s bench -- --models unet`).
"""

from __future__ import annotations

import nox

PYPROJECT = nox.project.load_toml("pyproject.toml")
PYTHONS = nox.project.python_versions(PYPROJECT)
# The CPU build of torch lies on this project's machines' disk; an unpinned torch pulls a multi-GB CUDA build.
TORCH = "torch==2.13.0"

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "venv"
nox.options.error_on_missing_interpreters = False


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The test suite on CPU (GPU tests skip with a reason where there is none)."""
    session.install(TORCH, "-e", ".[onnx,prune,report,dev]")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHONS[0], default=False)
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHONS[0], default=False)
def smoke(session: nox.Session) -> None:
    """A tiny end-to-end run: every model, the torch pipelines, seconds not minutes."""
    session.install(TORCH, "-e", ".")
    session.run(
        "python", "-m", "bench", "run", "--size", "tiny", "--pipelines", "fp32,bf16,channels_last",
        "--batch-sizes", "1,4", "--time-budget", "0.3", "--out", "results/smoke", *session.posargs,
    )  # fmt: skip


@nox.session(python=PYTHONS[0], default=False)
def bench(session: nox.Session) -> None:
    """The default benchmark matrix on the best device present."""
    session.install(TORCH, "-e", ".[onnx,prune]")
    session.run("python", "-m", "bench", "run", *session.posargs)
