"""The example plugin (tests/plugin_example): discovered through its entry point, does real work, is the README's.

The test puts the ready-made ``.dist-info`` folder beside the module on sys.path,
which is what ``pip install`` of tests/plugin_example leaves in site-packages
(checked below by building the wheel).
"""

from __future__ import annotations

import configparser
import math
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

import optimizers.base as base
from bench.core.artifact import TorchArtifact
from bench.core.errors import NotApplicable, PipelineError
from optimizers.registry import PASSES, Pass, all_passes, parse_pipeline
from reference_models import get_model
from tests.conftest import pass_context, readme_block

PLUGIN_DIR = Path(__file__).resolve().parent.parent / "plugin_example"
SECTION = "## Write your own pass"


@pytest.fixture
def fuse_bn(monkeypatch) -> type[Pass]:
    """The plugin's pass, found as a user's install would find it: through the entry point."""
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    monkeypatch.setattr(base, "_entry_points_loaded", False)
    yield all_passes()["fuse-bn"]
    PASSES.pop("fuse-bn", None)


def _batch_norms(module: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in module.modules())


def test_entry_point_plugin_is_discovered_and_run(fuse_bn, run_matrix) -> None:
    frame = run_matrix(models=("dcgan",), pipelines=("fp32", "fuse-bn"), batch_sizes=(2,))
    assert list(frame["status"]) == ["ok", "ok"], frame["reason"].tolist()
    fused = frame.iloc[1]
    assert "folded 2 BatchNorm2d into ConvTranspose2d" in fused["notes"]
    assert fused["psnr_db"] > 60 and not math.isinf(fused["psnr_db"])  # same function, other rounding
    assert fused["params"] < frame.iloc[0]["params"]  # BatchNorm parameters are gone


@pytest.mark.parametrize("size", ["tiny", "small"])
def test_fuse_bn_folds_every_dcgan_batch_norm_and_keeps_the_output(fuse_bn, size: str) -> None:
    spec = get_model("dcgan")
    original = spec.build(size)
    inputs = spec.example_inputs(2, size, 0)
    norms = _batch_norms(original)
    assert norms == {"tiny": 2, "small": 4}[size]
    art = fuse_bn().apply(TorchArtifact(module=original), pass_context(inputs))
    assert art.notes == (f"folded {norms} BatchNorm2d into ConvTranspose2d",)
    assert _batch_norms(art.module) == 0 and _batch_norms(original) == norms  # the input is untouched
    with torch.inference_mode():
        torch.testing.assert_close(art.module(*inputs), original(*inputs), rtol=1e-4, atol=1e-5)


def test_fuse_bn_says_only_what_it_changed(fuse_bn) -> None:
    class NotSequential(nn.Module):
        """Registers a conv and a BatchNorm2d next to each other but calls the norm first."""

        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(self.bn(x))

    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        NotSequential(),
        nn.ConvTranspose2d(4, 4, 4, 2, 1, groups=2),  # grouped: left alone
        nn.BatchNorm2d(4),
    ).eval()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):  # non-trivial statistics, so a wrong fold shows in the output
            m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2), m.weight.data.uniform_(0.5, 2)
    x = torch.randn(2, 3, 8, 8)
    art = fuse_bn().apply(TorchArtifact(module=net), pass_context((x,)))
    assert art.notes == ("folded 1 BatchNorm2d into Conv2d",)
    assert _batch_norms(art.module) == 2
    with torch.inference_mode():
        torch.testing.assert_close(art.module(x), net(x), rtol=1e-4, atol=1e-5)


def test_fuse_bn_with_nothing_to_fold_is_a_skipped_row(fuse_bn, run_matrix) -> None:
    unet = get_model("unet")  # GroupNorm only
    with pytest.raises(NotApplicable, match="no convolution followed by a BatchNorm2d"):
        fuse_bn().apply(
            TorchArtifact(module=unet.build("tiny")), pass_context(unet.example_inputs(1, "tiny", 0))
        )
    frame = run_matrix(models=("unet",), pipelines=("fp32", "fuse-bn"), batch_sizes=(1,))
    assert list(frame["status"]) == ["ok", "skipped"]
    assert "no convolution followed by a BatchNorm2d" in frame.iloc[1]["reason"]


def test_fuse_bn_declares_its_order_rule(fuse_bn) -> None:
    assert [p.spec for p in parse_pipeline("fuse-bn+compile").passes] == ["fuse-bn", "compile"]
    with pytest.raises(
        PipelineError, match="'compile\\+fuse-bn' cannot run: fuse-bn changes the module's layers"
    ):
        parse_pipeline("compile+fuse-bn")


@pytest.mark.slow
def test_the_example_pyproject_is_what_pip_installs(tmp_path: Path) -> None:
    """pip accepts the pyproject (the README's snippet), and the wheel declares the entry point the tests use."""
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "genbench_example_pass.py"):
        shutil.copy(PLUGIN_DIR / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    offline = ["--no-build-isolation", "--no-index"]  # the test machine's setuptools, no network
    subprocess.run([*pip, "install", "--dry-run", *offline, str(src)], check=True)  # genbench resolves
    subprocess.run([*pip, "wheel", "--no-deps", *offline, "-w", str(tmp_path / "out"), str(src)], check=True)
    (wheel,) = (tmp_path / "out").glob("*.whl")
    with zipfile.ZipFile(wheel) as z:
        assert "genbench_example_pass.py" in z.namelist()
        built = z.read("genbench_example_pass-0.1.0.dist-info/entry_points.txt").decode()
    shipped = (PLUGIN_DIR / "genbench_example_pass-0.1.0.dist-info" / "entry_points.txt").read_text()
    parsed = [configparser.ConfigParser() for _ in range(2)]
    parsed[0].read_string(built), parsed[1].read_string(shipped)
    assert dict(parsed[0]["genbench.passes"]) == dict(parsed[1]["genbench.passes"])


def _readme_block(language: str) -> str:
    return readme_block(SECTION, language)


def test_the_readme_pass_is_the_tested_plugin() -> None:
    assert _readme_block("python") == (PLUGIN_DIR / "genbench_example_pass.py").read_text()


def test_the_readme_pyproject_is_the_tested_one() -> None:
    assert _readme_block("toml") == (PLUGIN_DIR / "pyproject.toml").read_text()
