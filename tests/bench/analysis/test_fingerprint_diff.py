"""fingerprint_diff: the lines printed before a comparison, and whether the two sides are the same hardware."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.analysis.fingerprint_diff import (
    describe_machine,
    different_hardware,
    fingerprint_differences,
    fingerprint_of,
    isa_level,
)
from bench.measure.fingerprint import hw_id

RESULTS = Path(__file__).resolve().parents[3] / "results"
AVX2_ISA = ["avx", "avx2", "fma", "f16c"]
AVX512_ISA = [*AVX2_ISA, "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16"]


def committed_env(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / name / "env.json").read_text())


def old_env(capability: str = "AVX2", cores: int = 2, torch: str = "2.13.0+cpu") -> dict[str, Any]:
    """An env.json as written before fingerprints (schema 1-3)."""
    return {
        "device": "cpu",
        "packages": {"torch": torch, "onnxruntime": "1.32.0"},
        "torch_cuda": None,
        "cpu": {
            "model": "AMD EPYC",
            "machine": "x86_64",
            "logical_cores": cores,
            "physical_cores": cores,
            "torch_threads": 2,
            "torch_cpu_capability": capability,
            "memory_gb": 23.5,
        },
        "gpus": [],
    }


def new_env(**hardware: Any) -> dict[str, Any]:
    """An env.json with a measured fingerprint; ``hardware`` overrides the CPU fields, ``torch=`` the version."""
    torch = hardware.pop("torch", "2.13.0+cpu")
    hw = {
        "cpu_model": "AMD EPYC",
        "machine": "x86_64",
        "logical_cores": 2,
        "physical_cores": 2,
        "isa": AVX512_ISA,
        "memory_gib": 23.5,
        **hardware,
    }
    software = {"torch": torch, "cuda": None, "onnxruntime": "1.32.0", "tensorrt": None}
    env = old_env("AVX512")
    env["fingerprint"] = {"hardware": hw, "software": software, "hw_id": hw_id(hw)}
    return env


def test_committed_avx2_and_avx512_runs_are_different_hardware() -> None:
    avx2 = committed_env("cpu-amd-epyc-2c-20261123")
    avx512 = committed_env("cpu-amd-epyc-avx512-2c-20261202")
    assert fingerprint_differences(avx2, avx512) == ["cpu vector level (torch): AVX2 -> AVX512"]
    assert different_hardware(avx2, avx512) and different_hardware(avx512, avx2)
    assert not different_hardware(avx2, avx2) and fingerprint_differences(avx2, avx2) == []


def test_committed_merged_baseline_has_one_common_fingerprint() -> None:
    baseline = committed_env("baselines/cpu-amd-epyc-avx2-1t")
    fp = fingerprint_of(baseline)
    assert fp["derived"] and fp["hw_id"] is None
    assert fp["hardware"]["isa_level"] == "AVX2" and fp["hardware"]["cpu_model"] == "AMD EPYC"
    avx2 = committed_env("cpu-amd-epyc-2c-20261123")
    assert not different_hardware(baseline, avx2)
    assert fingerprint_differences(baseline, avx2) == ["torch_threads: 1 -> 2"]  # said, not hardware


def test_measured_fingerprints_name_the_features_one_side_lacks() -> None:
    base, new = new_env(isa=AVX2_ISA), new_env()
    lines = fingerprint_differences(base, new)
    assert lines == ["NEW has avx512f, avx512bw, avx512vl, avx512_vnni, avx512_bf16; BASE does not"]
    assert fingerprint_differences(new, base) == [
        "BASE has avx512f, avx512bw, avx512vl, avx512_vnni, avx512_bf16; NEW does not"
    ]
    assert different_hardware(base, new)


def test_every_hardware_field_is_a_line_and_software_is_not_different_hardware() -> None:
    base = new_env(cpu_model="AMD EPYC 7763", logical_cores=2)
    new = new_env(cpu_model="AMD EPYC 9654", logical_cores=4, torch="2.14.1+cpu")
    assert fingerprint_differences(base, new) == [
        "cpu_model: AMD EPYC 7763 -> AMD EPYC 9654",
        "logical_cores: 2 -> 4",
        "torch: 2.13.0+cpu -> 2.14.1+cpu",
    ]
    assert different_hardware(base, new)
    software_only = new_env(torch="2.14.1+cpu")
    assert fingerprint_differences(new_env(), software_only) == ["torch: 2.13.0+cpu -> 2.14.1+cpu"]
    assert not different_hardware(new_env(), software_only)


def test_gpu_driver_and_gpu_presence_are_hardware() -> None:
    gpu = {
        "gpu_name": "NVIDIA H100",
        "gpu_memory_gib": 79.1,
        "compute_capability": "9.0",
        "mig_profile": None,
    }
    base, new = new_env(**gpu, gpu_driver="550.54"), new_env(**gpu, gpu_driver="560.35")
    assert fingerprint_differences(base, new) == ["gpu_driver: 550.54 -> 560.35"]
    assert different_hardware(base, new)
    cpu_only = new_env()
    lines = fingerprint_differences(cpu_only, base)
    assert lines == ["gpu_name: none -> NVIDIA H100 (BASE ran on no GPU)"] and different_hardware(
        cpu_only, base
    )


def test_old_cuda_env_derives_its_gpu() -> None:
    env = old_env()
    env["device"] = "cuda:1"
    env["gpus"] = [
        {"index": 0, "name": "NVIDIA A10G", "memory_gb": 22.0, "compute_capability": "8.6"},
        {
            "index": 1,
            "name": "NVIDIA H100",
            "memory_gb": 79.1,
            "compute_capability": "9.0",
            "driver": "550.54",
        },
    ]
    hw = fingerprint_of(env)["hardware"]
    assert hw["gpu_name"] == "NVIDIA H100" and hw["gpu_driver"] == "550.54" and hw["gpu_memory_gib"] == 79.1


def test_old_env_against_a_measured_one_compares_the_vector_level_only() -> None:
    """An old env lists no flags: an AVX-512 one matches a VNNI/BF16 machine, an AVX2 one does not."""
    assert not different_hardware(old_env("AVX512"), new_env())
    assert fingerprint_differences(old_env("AVX512"), new_env()) == []
    assert fingerprint_differences(old_env("AVX2"), new_env()) == ["cpu vector level (torch): AVX2 -> AVX512"]
    assert different_hardware(new_env(), old_env("AVX2"))


def test_unknown_side_is_said_once_and_is_not_different_hardware() -> None:
    assert fingerprint_differences({}, new_env()) == ["BASE has no env.json: its hardware is unknown"]
    assert fingerprint_differences(new_env(), None) == ["NEW has no env.json: its hardware is unknown"]
    assert not different_hardware({}, new_env()) and not different_hardware({}, {})
    lines = fingerprint_differences({"run_id": "x"}, new_env())
    assert lines == ["BASE's env.json does not say what hardware it ran on"]


def test_merged_sources_on_different_hardware_are_compared_as_sets_of_machines() -> None:
    avx2, avx512 = new_env(isa=AVX2_ISA), new_env()
    mixed = {"runs": [avx2, avx512, avx2]}
    fp = fingerprint_of(mixed)
    assert len(fp["machines"]) == 2
    assert not different_hardware(mixed, {"runs": [avx512, avx2]})  # the same two machines
    assert different_hardware(mixed, avx512)
    lines = fingerprint_differences(mixed, avx512)
    assert lines[0].startswith(
        "BASE merges runs from 2 machines: AMD EPYC, 2 cores, avx avx2 fma f16c, hw_id "
    )
    assert lines[1].startswith("BASE has a machine NEW lacks: AMD EPYC, 2 cores, avx avx2 fma f16c")
    assert len(lines) == 2


def test_merged_repeats_share_the_hardware_and_show_mixed_software() -> None:
    merged = {"runs": [new_env(), new_env(torch="2.14.1+cpu")]}
    fp = fingerprint_of(merged)
    assert fp["hw_id"] == new_env()["fingerprint"]["hw_id"]
    assert fp["software"]["torch"] == "2.13.0+cpu or 2.14.1+cpu"
    assert fingerprint_differences(merged, new_env(torch="2.14.1+cpu")) == [
        "torch: 2.13.0+cpu or 2.14.1+cpu -> 2.14.1+cpu"
    ]


def test_isa_level_and_description() -> None:
    assert isa_level({"isa": AVX512_ISA}) == "AVX512"
    assert isa_level({"isa": AVX2_ISA}) == "AVX2"
    assert isa_level({"isa": [], "machine": "x86_64"}) == "DEFAULT"
    assert isa_level({"isa": ["asimd", "sve"], "machine": "aarch64"}) is None
    assert isa_level({"isa_level": "AVX2"}) == "AVX2" and isa_level({}) is None
    assert describe_machine(fingerprint_of(old_env())) == "AMD EPYC, 2 cores, AVX2"
