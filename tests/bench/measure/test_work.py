"""Work of a forward call: FLOPs and bytes moved, per item and fixed, traced on meta or on the device."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.measure.work import count_flops, measure_work, trace_work
from reference_models import get_model


def test_reference_model_work_is_traced_on_meta_and_matches_a_real_trace() -> None:
    spec = get_model("dcgan")
    module = spec.build("tiny")
    work = measure_work(module, lambda batch: spec.example_inputs(batch, "tiny", 0))
    assert work.traced_on == "meta"
    params = sum(p.numel() for p in module.parameters())
    assert work.weight_elems >= params
    assert work.moved_elems_per_item > 0 and work.live_elems_per_item > 0
    assert work.moved_elems_fixed >= work.weight_elems  # weights are read once per call
    real = trace_work(module, lambda batch: spec.example_inputs(batch, "tiny", 0), where=torch.device("cpu"))
    for part in ("flops", "moved_elems", "live_elems"):  # meta and a real run trace the same work
        for half in ("per_item", "fixed"):
            assert getattr(real, f"{part}_{half}") == getattr(work, f"{part}_{half}"), (part, half)
    # weights are read once per call, and are not activations: DCGAN's generator has no other fixed traffic
    assert work.moved_elems_fixed == work.weight_elems
    assert work.live_elems_fixed == 0
    # the split into per item and fixed reproduces a direct count at another batch
    direct = count_flops(module, spec.example_inputs(4, "tiny", 0))
    assert work.at(4, "fp32").gflops_per_item * 4 == pytest.approx(direct / 1e9)


def test_bytes_follow_the_rows_precision() -> None:
    spec = get_model("vae")
    work = measure_work(spec.build("tiny"), lambda batch: spec.example_inputs(batch, "tiny", 0))
    fp32, bf16, int8 = (work.at(8, p) for p in ("fp32", "bf16", "int8"))
    assert bf16.mb_moved_per_item == pytest.approx(fp32.mb_moved_per_item / 2)
    assert int8.activation_mb_per_item == pytest.approx(fp32.activation_mb_per_item / 4)
    assert fp32.gflops_per_item == bf16.gflops_per_item
    assert work.at(1, "fp32").mb_moved_per_item > fp32.mb_moved_per_item  # weights amortized over 8


class _ReadsAValue(nn.Module):
    """Data-dependent Python (``.item()``) cannot run on meta: the trace falls back to the module's device."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = float(x.abs().max().item()) or 1.0
        return self.linear(x / scale)


def test_a_module_meta_cannot_run_is_traced_on_its_device() -> None:
    work = measure_work(_ReadsAValue(), lambda batch: (torch.randn(batch, 8),))
    assert work.traced_on == "cpu"
    assert work.flops_per_item == 2 * 8 * 8
