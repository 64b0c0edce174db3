"""What differs between the machines two runs come from, in lines a person reads before a table.

A ratio between two runs is only a regression when both ran on the same hardware:
an AVX2 guest and an AVX-512 VNNI/BF16 guest are both "AMD EPYC", and bf16 is 16x
apart between them. ``compare``, ``report``, ``merge`` and ``baseline check`` print
these lines first, and ``different_hardware`` is what lets ``--fail-on-regression``
stand down when the two sides are not the same machine.

Where a fingerprint comes from (``fingerprint_of``):

- env.json's ``"fingerprint"`` (bench.measure.fingerprint.hardware_fingerprint), as
  written by runs since schema 4;
- an older env.json: derived from ``cpu`` (model, cores, memory), the GPU ``device``
  names in ``gpus``, and ``packages``. Older envs never listed CPU flags, only torch's
  ``cpu.torch_cpu_capability`` ("AVX2", "AVX512"), so a derived fingerprint carries
  that as ``isa_level`` instead of an ``isa`` list, and is compared at that level:
  the committed AVX2 and AVX-512 runs show as different hardware, but an old AVX-512
  run and a new one cannot be told apart by VNNI or BF16. A derived fingerprint has
  ``"derived": True`` and no ``hw_id`` (it would not match a measured one);
- a merged run (``"runs": [env, ...]``): the fingerprint its sources share; when
  their hardware differs, ``{"machines": [fingerprint, ...]}`` (one per distinct
  machine), and the two sides are compared as sets of machines.

A key missing from a fingerprint is unknown and never compared; a key present with
None (no GPU driver read, no TensorRT installed) is a known "none", as in ``hw_id``.
Software differences (torch, CUDA, ONNX Runtime, TensorRT) and the torch thread count
are printed too, but only hardware makes ``different_hardware`` true. A side without
env.json is said once and is not "different hardware": nothing says it is.

Stdlib only, and no import of pandas or torch: it reads dictionaries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "describe_machine", "different_hardware", "fingerprint_differences", "fingerprint_of",
    "hardware_differences", "isa_level",
]  # fmt: skip

#: the order hardware keys are reported in; keys not listed follow, sorted
HARDWARE_ORDER = (
    "cpu_model", "machine", "isa", "logical_cores", "physical_cores", "memory_gib",
    "gpu_name", "gpu_memory_gib", "compute_capability", "gpu_driver", "mig_profile",
)  # fmt: skip
SOFTWARE_ORDER = ("torch", "cuda", "onnxruntime", "tensorrt")
_X86_AVX512 = ("avx512f", "avx512bw", "avx512vl")


def isa_level(hardware: dict[str, Any]) -> str | None:
    """torch's name for the vector level (``"AVX2"``, ``"AVX512"``, ``"DEFAULT"``); None when unknown.

    The one ISA reading an old env.json and a fingerprint share: an old env says it
    (``torch_cpu_capability``), a fingerprint's ``isa`` list implies it. ARM levels
    depend on the SVE vector length, which the flags do not give, so they are unknown.
    """
    if hardware.get("isa_level"):
        return str(hardware["isa_level"])
    isa = hardware.get("isa")
    if not isinstance(isa, list):
        return None
    flags = set(isa)
    if all(f in flags for f in _X86_AVX512):
        return "AVX512"
    if "avx2" in flags and "fma" in flags:
        return "AVX2"
    if str(hardware.get("machine", "")).lower() in ("x86_64", "amd64"):
        return "DEFAULT"
    return None


# ------------------------------------------------------------------ reading a fingerprint
def fingerprint_of(env: dict[str, Any] | None) -> dict[str, Any]:
    """The fingerprint of a run's env.json (module docstring): ``{}`` when there is no env to read.

    Returns ``{"hardware": {...}, "software": {...}, "hw_id": str | None, "derived": bool}``,
    or, for a merged run whose sources ran on different hardware, ``{"machines": [fp, ...]}``.
    """
    if not env:
        return {}
    runs = env.get("runs")
    if isinstance(runs, list):
        return _common([fp for fp in (fingerprint_of(r) for r in runs if isinstance(r, dict)) if fp])
    recorded = env.get("fingerprint")
    if isinstance(recorded, dict) and isinstance(recorded.get("hardware"), dict):
        software = recorded.get("software")
        return {
            "hardware": dict(recorded["hardware"]),
            "software": dict(software) if isinstance(software, dict) else {},
            "hw_id": recorded.get("hw_id"),
            "derived": False,
        }
    return _derived(env)


def _derived(env: dict[str, Any]) -> dict[str, Any]:
    """A fingerprint from an env.json written before fingerprints: what it recorded, nothing guessed."""
    cpu = env.get("cpu") if isinstance(env.get("cpu"), dict) else {}
    hardware: dict[str, Any] = {
        "cpu_model": cpu.get("model"),
        "machine": cpu.get("machine"),
        "isa_level": cpu.get("torch_cpu_capability"),
        "logical_cores": cpu.get("logical_cores"),
        "physical_cores": cpu.get("physical_cores"),
        "memory_gib": cpu.get("memory_gb"),
    }
    device = str(env.get("device") or "cpu")
    if device.startswith("cuda"):
        gpu = _env_gpu(env, device)
        hardware.update(
            gpu_name=gpu.get("name"),
            gpu_memory_gib=gpu.get("memory_gb"),
            compute_capability=gpu.get("compute_capability"),
            gpu_driver=gpu.get("driver"),
        )
    packages = env.get("packages") if isinstance(env.get("packages"), dict) else {}
    software = {
        "torch": packages.get("torch"),
        "cuda": env.get("torch_cuda"),
        "onnxruntime": packages.get("onnxruntime") or packages.get("onnxruntime-gpu"),
        "tensorrt": packages.get("tensorrt"),
    }
    hardware = {k: v for k, v in hardware.items() if v is not None}
    if not hardware:
        return {}
    return {
        "hardware": hardware,
        "software": {k: v for k, v in software.items() if v is not None},
        "hw_id": None,
        "derived": True,
    }


def _env_gpu(env: dict[str, Any], device: str) -> dict[str, Any]:
    """The ``gpus`` entry of ``cuda:N`` (the first one when the index is not listed)."""
    suffix = device.partition(":")[2]
    index = int(suffix) if suffix.isdigit() else 0
    gpus = [g for g in env.get("gpus") or [] if isinstance(g, dict)]
    match = [g for g in gpus if g.get("index") == index] or gpus[:1]
    return match[0] if match else {}


def _common(fingerprints: list[dict[str, Any]]) -> dict[str, Any]:
    """One fingerprint for a merged run's sources, or ``{"machines": [...]}`` when their hardware differs."""
    machines: list[dict[str, Any]] = []
    for fp in _flatten(fingerprints):
        if not any(_same_hardware(fp, seen) for seen in machines):
            machines.append(fp)
    if not machines:
        return {}
    if len(machines) > 1:
        return {"machines": machines}
    flat = _flatten(fingerprints)
    measured = [fp for fp in flat if not fp["derived"]]
    chosen = measured[0] if measured else flat[0]
    software: dict[str, Any] = {}
    for key in sorted({k for fp in flat for k in fp["software"]}):
        values = sorted({_shown(fp["software"][key]) for fp in flat if key in fp["software"]})
        software[key] = values[0] if len(values) == 1 else " or ".join(values)
    hw_ids = {fp["hw_id"] for fp in flat}
    return {
        "hardware": dict(chosen["hardware"]),
        "software": software,
        "hw_id": hw_ids.pop() if len(hw_ids) == 1 else None,
        "derived": any(fp["derived"] for fp in flat),
    }


def _flatten(fingerprints: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Single-machine fingerprints, with a nested merge's machines taken out."""
    flat: list[dict[str, Any]] = []
    for fp in fingerprints:
        flat.extend(fp.get("machines", [fp] if fp else []))
    return flat


# ------------------------------------------------------------------ comparing
def hardware_differences(base: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Lines naming each hardware difference between two single-machine fingerprints (BASE -> NEW)."""
    a, b = base.get("hardware") or {}, new.get("hardware") or {}
    lines: list[str] = []
    for key in _ordered(set(a) | set(b) | {"isa"}, HARDWARE_ORDER):
        if key == "isa_level":
            continue  # compared together with "isa"
        if key == "isa":
            lines.extend(_isa_lines(a, b))
        elif key in a and key in b and _shown(a[key]) != _shown(b[key]):
            lines.append(f"{key}: {_shown(a[key])} -> {_shown(b[key])}")
        elif key in a and key not in b and key == "gpu_name":
            lines.append(f"{key}: {_shown(a[key])} -> none (NEW ran on no GPU)")
        elif key in b and key not in a and key == "gpu_name":
            lines.append(f"{key}: none -> {_shown(b[key])} (BASE ran on no GPU)")
    return lines


def _isa_lines(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The CPU features one side has and the other lacks; torch's vector level where a side lists no flags."""
    if isinstance(a.get("isa"), list) and isinstance(b.get("isa"), list):
        lines = []
        only_new = [f for f in b["isa"] if f not in a["isa"]]
        only_base = [f for f in a["isa"] if f not in b["isa"]]
        if only_new:
            lines.append(f"NEW has {', '.join(only_new)}; BASE does not")
        if only_base:
            lines.append(f"BASE has {', '.join(only_base)}; NEW does not")
        return lines
    level_a, level_b = isa_level(a), isa_level(b)
    if level_a is not None and level_b is not None and level_a != level_b:
        return [f"cpu vector level (torch): {level_a} -> {level_b}"]
    return []


def _same_hardware(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return not hardware_differences(a, b)


def _software_lines(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    sa, sb = a.get("software") or {}, b.get("software") or {}
    return [
        f"{key}: {_shown(sa[key])} -> {_shown(sb[key])}"
        for key in _ordered(set(sa) & set(sb), SOFTWARE_ORDER)
        if _shown(sa[key]) != _shown(sb[key])
    ]


def _threads(env: dict[str, Any]) -> Any:
    """torch's thread count, the one result-changing setting env.json holds; None when sources disagree."""
    runs = env.get("runs")
    if isinstance(runs, list):
        values = {_threads(r) for r in runs if isinstance(r, dict)}
        return values.pop() if len(values) == 1 else None
    cpu = env.get("cpu") if isinstance(env.get("cpu"), dict) else {}
    return cpu.get("torch_threads")


@dataclass
class _Diff:
    notes: list[str] = field(default_factory=list)  # unknown sides, merged sides: said, never counted
    hardware: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)  # software and settings: said, not "different hardware"


def _diff(base_env: dict[str, Any] | None, new_env: dict[str, Any] | None) -> _Diff:
    diff = _Diff()
    sides = (("BASE", base_env or {}), ("NEW", new_env or {}))
    fps = {side: fingerprint_of(env) for side, env in sides}
    for side, env in sides:
        if not env:
            diff.notes.append(f"{side} has no env.json: its hardware is unknown")
        elif not fps[side]:
            diff.notes.append(f"{side}'s env.json does not say what hardware it ran on")
    if not fps["BASE"] or not fps["NEW"]:
        return diff
    base, new = fps["BASE"], fps["NEW"]
    if "machines" in base or "machines" in new:
        for side, fp in (("BASE", base), ("NEW", new)):
            if "machines" in fp:
                shown = "; ".join(describe_machine(m) for m in fp["machines"])
                diff.notes.append(f"{side} merges runs from {len(fp['machines'])} machines: {shown}")
        base_machines, new_machines = _flatten([base]), _flatten([new])
        for m in new_machines:
            if not any(_same_hardware(m, other) for other in base_machines):
                diff.hardware.append(f"NEW has a machine BASE lacks: {describe_machine(m)}")
        for m in base_machines:
            if not any(_same_hardware(m, other) for other in new_machines):
                diff.hardware.append(f"BASE has a machine NEW lacks: {describe_machine(m)}")
    else:
        diff.hardware = hardware_differences(base, new)
        diff.other = _software_lines(base, new)
    threads_base, threads_new = _threads(base_env or {}), _threads(new_env or {})
    if threads_base is not None and threads_new is not None and threads_base != threads_new:
        diff.other.append(f"torch_threads: {threads_base} -> {threads_new}")
    return diff


def fingerprint_differences(base_env: dict[str, Any] | None, new_env: dict[str, Any] | None) -> list[str]:
    """Every difference between the machines (and software) of two runs' env.json, BASE -> NEW.

    Unknown sides first (once each), then hardware, then software and the torch
    thread count; empty when nothing differs that the two envs both record.
    """
    diff = _diff(base_env, new_env)
    return [*diff.notes, *diff.hardware, *diff.other]


def different_hardware(base_env: dict[str, Any] | None, new_env: dict[str, Any] | None) -> bool:
    """True when the two runs' recorded hardware differs; False when it matches or a side is unknown."""
    return bool(_diff(base_env, new_env).hardware)


def describe_machine(fp: dict[str, Any]) -> str:
    """A short name for one machine: CPU model, cores, vector level or flags, GPU, hw_id where known."""
    hw = fp.get("hardware") or {}
    parts = [str(hw.get("cpu_model") or "unknown CPU")]
    if hw.get("logical_cores") is not None:
        parts.append(f"{hw['logical_cores']} cores")
    if isinstance(hw.get("isa"), list):
        parts.append(" ".join(hw["isa"]) or "no vector flags")
    elif isa_level(hw):
        parts.append(str(isa_level(hw)))
    if hw.get("gpu_name"):
        parts.append(str(hw["gpu_name"]))
    if fp.get("hw_id"):
        parts.append(f"hw_id {fp['hw_id']}")
    return ", ".join(parts)


def _ordered(keys: set[str], order: tuple[str, ...]) -> list[str]:
    return [k for k in order if k in keys] + sorted(keys - set(order))


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "none"
    return str(value)
