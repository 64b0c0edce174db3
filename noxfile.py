"""Developer sessions: `nox` runs the tests; `nox -s lint|smoke|bench|nightly` the rest.

Python versions come from pyproject's classifiers; extra arguments after `--` are
forwarded (`nox -s tests -- -k runner`, `nox -s bench -- --models unet`).
"""

from __future__ import annotations

import shutil

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
    session.install("ruff==0.17.6")
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


NIGHTLY_MATRIX = (
    "--device", "cpu", "--models", "dcgan,vae,unet", "--size", "tiny", "--pipelines", "fp32,bf16,channels_last",
    "--batch-sizes", "1,4", "--seed", "0", "--time-budget", "1", "--min-samples", "30",
)  # fmt: skip


@nox.session(python=PYTHONS[0], default=False)
def nightly(session: nox.Session) -> None:
    """A small fixed CPU matrix, run 3 times, checked against the committed baseline of this machine class.

    One intra-op thread: on a shared machine a multi-threaded forward whose threads cannot all get a
    core stalls at every barrier (dcgan tiny: 0.5 ms -> 170 ms measured). Three merged runs let compare
    see run-to-run drift ("noisy") instead of crying wolf, and a 0.1 ms floor keeps the sub-millisecond
    DCGAN cells (where one scheduler hiccup is 20%) from failing the job alone. Writes results/nightly/{merged,report.html,
    summary.md}; exit 1 on a regression. `nox -s nightly -- --save` records this machine's baseline instead.
    """
    session.install(TORCH, "-e", ".[report]")
    out = "results/nightly"
    shutil.rmtree(out, ignore_errors=True)
    runs = [f"{out}/run{i}" for i in (1, 2, 3)]
    for run in runs:
        session.run(
            "python", "-m", "bench", "run", *NIGHTLY_MATRIX, "--out", run, env={"OMP_NUM_THREADS": "1"}
        )
    session.run("python", "-m", "bench", "merge", *runs, "--out", f"{out}/merged")
    session.run("python", "-m", "bench", "report", f"{out}/merged", "--html", f"{out}/report.html")
    if "--save" in session.posargs:
        session.run("python", "-m", "bench", "baseline", "save", f"{out}/merged", "--force")
        return
    session.run(
        "python", "-m", "bench", "baseline", "check", f"{out}/merged", "--markdown", f"{out}/summary.md",
        "--fail-on-regression", "--missing-ok", "--min-change-ms", "0.1",
    )  # fmt: skip
