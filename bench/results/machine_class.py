"""Which class of machine a run's numbers belong to, and the names and defaults of baselines.

Stdlib only: the command line reads the defaults here to build its --help without
importing pandas.

A class, not a host name: CI runners get a fresh host name every night, but the same
class of machine should give the same numbers, and a baseline from another class
would report the hardware difference as a regression. The class is the CPU model, the
vector ISA level that changes results and the torch thread count, or the GPU model:
``cpu-amd-epyc-7763-64-core-processor-avx2-4t``, ``cpu-amd-epyc-avx512-vnni-bf16-1t``,
``cuda-nvidia-h100-80gb-hbm3``.

The ISA level is there because two guests that both call themselves "AMD EPYC" can be
AVX2-only or AVX-512 with VNNI and BF16, and bf16 is 16x apart between them: an AVX2
baseline must never be the reference for an AVX-512 machine. It is read from
env.json's ``fingerprint`` (its ``isa`` flags: ``avx2``, ``avx2-vnni``, ``avx512``,
``avx512-vnni-bf16``, ``avx512-vnni-bf16-fp16-amx``; ARM ``neon``, ``sve``, ``sve2``
with ``bf16``, ``i8mm``, ``sme``), or, for an env.json written before fingerprints, from
torch's ``cpu.torch_cpu_capability`` (``avx2``, ``avx512``): such an env never listed
VNNI or BF16, so an old AVX-512 run is class ``...-avx512-...`` and a new run on the same
machine is ``...-avx512-vnni-bf16-...`` (record the baseline again). An env with
neither, or a CPU without vector extensions torch uses ("DEFAULT"), has no ISA part.

The nightly check uses the same 5% threshold as ``compare`` (NIGHTLY_THRESHOLD): the
run-to-run drift a shared machine adds is no longer a wider threshold but compare's
measured drift allowance (bench.analysis.verdict: x2.25 between single runs on this
project's 2-vCPU guests, x1.60 between 3-repeat pools), on top of which 25% hid even a
2x slowdown.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bench.core.errors import RunError
from bench.core.text import slug

DEFAULT_ROOT = Path("results") / "baselines"
NIGHTLY_THRESHOLD = 0.05
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def machine_class(env: dict[str, Any]) -> str:
    """The class of machine a run's numbers belong to (module docstring); RunError when it cannot be told."""
    if isinstance(env.get("runs"), list):  # a merged folder: one class if all its runs share it
        classes = sorted({machine_class(source) for source in env["runs"] if isinstance(source, dict)})
        if len(classes) != 1:
            shown = ", ".join(classes) or "none"
            raise RunError(f"a merged run spans machine classes ({shown}): name its baseline with --name")
        return classes[0]
    if not env:
        raise RunError(
            "the run has no env.json, so its machine class is unknown: name the baseline with --name"
        )
    device = str(env.get("device") or "cpu")
    if device.startswith("cuda"):
        suffix = device.partition(":")[2]
        index = int(suffix) if suffix.isdigit() else 0
        gpus = [g for g in env.get("gpus") or [] if isinstance(g, dict)]
        match = [g for g in gpus if g.get("index") == index] or gpus[:1]
        if not match:
            raise RunError(f"env.json names device {device} but lists no GPU: name the baseline with --name")
        return f"cuda-{slug(str(match[0].get('name', 'gpu')))}"
    cpu = env.get("cpu") if isinstance(env.get("cpu"), dict) else {}
    hardware = _fingerprint_hardware(env)
    threads = cpu.get("torch_threads") or cpu.get("logical_cores") or 0
    model = cpu.get("model") or hardware.get("cpu_model") or "unknown"
    isa = isa_tag(env)
    return "-".join(
        part for part in (slug(device.split(":")[0]), slug(str(model)), isa, f"{threads}t") if part
    )


def isa_tag(env: dict[str, Any]) -> str:
    """The result-changing vector ISA of a run's CPU as a class part (module docstring); "" when unknown."""
    isa = _fingerprint_hardware(env).get("isa")
    if isinstance(isa, list):
        return flags_tag([str(f) for f in isa])
    cpu = env.get("cpu") if isinstance(env.get("cpu"), dict) else {}
    capability = str(cpu.get("torch_cpu_capability") or "")
    return "" if capability.upper() in ("", "DEFAULT") else slug(capability)


def flags_tag(isa: list[str]) -> str:
    """``avx512-vnni-bf16`` from a fingerprint's ISA flags: the vector width, then the extensions that
    change which kernels run at it. Only flags of bench.measure.fingerprint.ISA_FEATURES are read, so
    the tag of a machine stays the same as long as that list does."""
    flags = set(isa)
    parts: list[str] = []
    if "avx512f" in flags:
        parts = ["avx512"]
        parts += [name for flag, name in _AVX512_EXTRAS if flag in flags]
        if "amx_tile" in flags:
            parts.append("amx")
    elif "avx2" in flags:
        parts = ["avx2", *(["vnni"] if "avx_vnni" in flags else [])]
    elif flags & {"asimd", "sve", "sve2"}:
        parts = ["sve2" if "sve2" in flags else "sve" if "sve" in flags else "neon"]
        parts += [flag for flag in ("bf16", "i8mm", "sme") if flag in flags]
    return "-".join(parts)


_AVX512_EXTRAS = (("avx512_vnni", "vnni"), ("avx512_bf16", "bf16"), ("avx512_fp16", "fp16"))


def _fingerprint_hardware(env: dict[str, Any]) -> dict[str, Any]:
    fingerprint = env.get("fingerprint")
    hardware = fingerprint.get("hardware") if isinstance(fingerprint, dict) else None
    return hardware if isinstance(hardware, dict) else {}


def check_name(name: str) -> str:
    """A baseline name is one folder name: letters, digits, '.', '_' and '-' (no path tricks)."""
    if not _NAME.fullmatch(name) or name in (".", ".."):
        raise RunError(f"baseline name {name!r} must be letters, digits, '.', '_' or '-'")
    return name
