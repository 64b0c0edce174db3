"""The device a run was measured on, as the projection sees it: a catalogue entry, or its measured peak."""

from __future__ import annotations

from dataclasses import dataclass

from bench.core.precision import PEAK_PRECISIONS
from bench.hardware.catalog import Catalog, DeviceSpec, Figure
from bench.hardware.peak import PeakResult, read_cached


def spec_from_peak(result: PeakResult) -> DeviceSpec:
    """A measured peak as a DeviceSpec (no price, no TDP: those are not measurable here)."""
    source = f"measured by bench.hardware.peak on {result.measured_at} ({result.threads or 'all'} threads, torch {result.torch_version})"
    peak: dict[str, Figure | None] = {}
    unsupported: dict[str, str] = {}
    for precision in PEAK_PRECISIONS:
        rate = result.flops.get(precision)
        if rate:
            peak[precision] = Figure(
                value=rate, unit="TOPS" if precision == "int8" else "TFLOPS", source=source
            )
        else:
            peak[precision] = None
            unsupported[precision] = result.skipped.get(precision, "not measured")
    return DeviceSpec(
        key=f"measured:{result.device}",
        name=f"{result.device_name} (measured)",
        kind="gpu" if result.kind == "cuda" else "cpu",
        per="device",
        peak=peak,
        memory=Figure(value=float(result.memory_bytes), unit="GiB", source=source),
        memory_bandwidth=Figure(value=result.copy_bytes_s, unit="GB/s", source=f"copy bandwidth, {source}"),
        unsupported=unsupported,
        origin="measured",
    )


@dataclass(frozen=True)
class Source:
    """The device a run was measured on, as projection sees it, and how it was identified."""

    spec: DeviceSpec
    how: str


def resolve_source(
    device_name: str,
    device: str,
    threads: int | None,
    catalog: Catalog,
    mode: str = "auto",
) -> Source:
    """Identify the run's device: a catalogue entry (``mode`` auto/catalog) or a measured peak (auto/measured).

    - catalogue: ``device_name`` equal to an entry's key or alias. A per-core CPU
      entry is scaled by ``threads`` (the run's torch thread count, from env.json),
      because the run used that many cores.
    - measured: the cached ``bench peak`` result for ``device_name``. A projection never
      measures a peak itself (that takes minutes and would describe this machine, not
      necessarily the run's): ``python -m bench peak`` on that machine caches one. A peak
      cached with another thread count than the run used is used anyway, and ``how`` says so.

    Raises ValueError (one line) when neither applies.
    """
    if mode in ("auto", "catalog"):
        spec = catalog.match(device_name)
        if spec is not None:
            if spec.per == "core":
                if not threads:
                    raise ValueError(f"{spec.key} is a per-core entry and the run records no thread count")
                spec = spec.times(threads)
            return Source(spec, f"catalogue entry {spec.label} ({spec.name})")
        if mode == "catalog":
            raise ValueError(
                f"the run's device {device_name!r} is not in the catalogue; add it with --catalog FILE"
            )
    result = read_cached(device_name)
    if result is None:
        raise ValueError(
            f"the run's device {device_name!r} is not in the catalogue and has no measured peak; "
            f"run `python -m bench peak` on that machine, or add it with --catalog FILE"
        )
    how = f"measured peak of {device_name} (cached, {result.measured_at})"
    if threads and result.threads and threads != result.threads:
        how += f"; WARNING: peak measured with {result.threads} threads, the run used {threads}"
    return Source(spec_from_peak(result), how)
