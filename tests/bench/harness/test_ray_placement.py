"""What a device class's cells ask of a Ray cluster, and which nodes can give it: pure, no cluster needed."""

from __future__ import annotations

import pytest

from bench.cluster.placement import device_classes, label_matches, placement_for, unfit_reason
from bench.core.errors import ConfigError

CPU_NODE = {
    "Alive": True,
    "NodeManagerHostname": "cpu-box",
    "Resources": {"CPU": 16.0, "cpu_box": 1.0, "memory": 1e10},
    "Labels": {"ray.io/node-id": "a"},
}
H100_NODE = {
    "Alive": True,
    "NodeManagerHostname": "h100",
    "Resources": {"CPU": 8.0, "GPU": 1.0, "accelerator_type:H100": 1.0},
    "Labels": {"ray.io/accelerator-type": "H100"},
}


def test_a_cuda_cell_asks_for_one_gpu_and_a_cpu_cell_for_its_threads() -> None:
    cuda = placement_for("cuda", None)
    assert cuda.options() == {"num_cpus": 1.0, "num_gpus": 1.0}
    assert placement_for("cpu", 4).options() == {"num_cpus": 4.0, "num_gpus": 0.0}
    assert cuda.fits(H100_NODE) and not cuda.fits(CPU_NODE)
    assert placement_for("cpu", 16).fits(CPU_NODE) and not placement_for("cpu", 17).fits(CPU_NODE)


def test_resources_and_labels_apply_to_their_class_or_to_every_class() -> None:
    specs = {"ray_resources": ("accelerator_type:H100@cuda", "team=2"), "node_labels": ("zone=a@cpu",)}
    cuda = placement_for("cuda", 2, **specs)
    cpu = placement_for("cpu", 2, **specs)
    assert cuda.options()["resources"] == {"accelerator_type:H100": 0.001, "team": 2.0}
    assert "label_selector" not in cuda.options()
    assert cpu.options()["resources"] == {"team": 2.0}
    assert cpu.options()["label_selector"] == {"zone": "a"}


def test_a_cpu_cell_pinned_to_cpu_boxes_never_fits_a_gpu_node_and_vice_versa() -> None:
    cpu = placement_for("cpu", 1, ray_resources=("cpu_box@cpu",))
    cuda = placement_for("cuda", 1, node_labels=("ray.io/accelerator-type=H100@cuda",))
    assert [cpu.fits(n) for n in (CPU_NODE, H100_NODE)] == [True, False]
    assert [cuda.fits(n) for n in (CPU_NODE, H100_NODE)] == [False, True]
    assert not cuda.fits({**H100_NODE, "Alive": False})


@pytest.mark.parametrize(
    ("selector", "value", "matches"),
    [
        ("H100", "H100", True),
        ("H100", "A100", False),
        ("H100", None, False),
        ("!H100", "A100", True),
        ("!H100", None, True),
        ("in(A100, H100)", "H100", True),
        ("in(A100,H100)", "L4", False),
        ("!in(A100,H100)", "L4", True),
    ],
)
def test_label_selector_values_read_as_ray_reads_them(
    selector: str, value: str | None, matches: bool
) -> None:
    assert label_matches(selector, value) is matches


def test_the_default_classes_are_what_a_local_run_picks_at_cluster_scale() -> None:
    assert device_classes(None, [CPU_NODE], (), ()) == ("cpu",)
    assert device_classes(None, [CPU_NODE, H100_NODE], (), ()) == ("cuda",)
    assert device_classes(("CPU", "cuda", "cpu"), [CPU_NODE], (), ()) == ("cpu", "cuda")
    with pytest.raises(ConfigError, match="names cuda, which this run does not cover"):
        device_classes(("cpu",), [CPU_NODE], (), ("accelerator_type:H100@cuda",))


def test_a_class_no_node_can_take_is_named_with_what_each_node_has() -> None:
    reason = unfit_reason(placement_for("cuda", 1), [CPU_NODE])
    assert reason is not None
    assert "no live node of the cluster can take cuda cells: 1 GPU and 1 CPU each" in reason
    assert "cpu-box (16 CPU, 0 GPU, cpu_box)" in reason
    assert unfit_reason(placement_for("cuda", 1), [CPU_NODE, H100_NODE]) is None
