"""The device catalogue: vendor figures for hardware you may not own, and what genbench knows of each kind.

The figures live in a data file (``bench/hardware/devices.toml``), not in code, so
they can be reviewed, versioned and overridden (``--catalog FILE``) without
touching Python. Loading validates everything a projection relies on, because a
wrong unit or a missing source silently corrupts every number derived from it:

- unknown keys are rejected at every level (a typo is an error, not a default);
- every device has every field, and every peak precision is a figure,
  ``supported = false`` (the hardware lacks it) or ``missing = true`` (the vendor
  publishes no figure for it); TDP and prices may be missing the same way, memory
  and bandwidth may not (the roofline needs both);
- units are checked per field and converted to SI (FLOP/s, bytes, bytes/s, W,
  USD, USD/h), so the rest of the code never sees "TB/s";
- every figure, and every missing one, names its source with a year; prices also
  carry a date and ``indicative = true``.

Kinds (``[kinds.<kind>]``): the software stack a user would run on each kind of
hardware, whether genbench can measure on it today, the precisions it runs
natively and, for kinds genbench cannot measure, the prior efficiency a projection
uses instead of a measured one: the median of vendor-published results of that
kind as a fraction of the peak they ran at (each point's figures and source in the
file, the efficiency computed here), with their spread.

Edge devices may share their memory with the CPU (``shared_memory``; the OS and
runtime keep ``os_reserve`` of it) and have power modes (``power_modes``): a
target ``KEY@MODE`` draws the mode's power and runs at the mode's figures, which
the vendor often gives only for its top mode (``top_mode``).

Stdlib only (tomllib, difflib, statistics) besides genbench's errors: ``bench devices`` starts fast and this
module is safe to import anywhere.
"""

from __future__ import annotations

import difflib
import math
import re
import statistics
import tomllib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from bench.core.errors import CatalogError, UnknownDeviceError
from bench.core.precision import PEAK_PRECISIONS

SCHEMA_VERSION = 1
PRECISIONS = PEAK_PRECISIONS  # every catalogue entry gives each, or says it is unsupported or missing
#: kinds of hardware; [kinds.<kind>] in the built-in file describes each
KINDS = ("gpu", "cpu", "tpu", "accelerator", "fpga", "edge-gpu")
PER = ("device", "core")

_FLOPS_UNITS = {"GFLOPS": 1e9, "TFLOPS": 1e12, "PFLOPS": 1e15}
_OPS_UNITS = {"GOPS": 1e9, "TOPS": 1e12, "POPS": 1e15}
_MEMORY_UNITS = {"MiB": 2.0**20, "GiB": 2.0**30, "TiB": 2.0**40, "GB": 1e9, "TB": 1e12}
#: field -> accepted units and their factor to SI
UNITS: dict[str, dict[str, float]] = {
    "memory": _MEMORY_UNITS,
    "os_reserve": _MEMORY_UNITS,
    "memory_bandwidth": {"GB/s": 1e9, "TB/s": 1e12, "GiB/s": 2.0**30},
    "tdp": {"W": 1.0},
    "power": {"W": 1.0},
    "price": {"USD": 1.0},
    "cloud_price": {"USD/h": 1.0},
    **{f"peak.{p}": (_OPS_UNITS if p == "int8" else _FLOPS_UNITS) for p in PRECISIONS},
}
FIGURE_FIELDS = ("memory", "memory_bandwidth", "tdp", "price", "cloud_price")
#: figures a vendor may leave out (``missing = true``): the roofline needs memory and bandwidth
MAY_BE_MISSING = ("tdp", "price", "cloud_price")
_OPTIONAL_KEYS = {"notes", "shared_memory", "os_reserve", "power_modes", "top_mode"}
DEVICE_KEYS = {"name", "aliases", "kind", "per", "peak", *FIGURE_FIELDS, *_OPTIONAL_KEYS}
_FIGURE_KEYS = {"value", "unit", "source", "sparse", "note", "date", "indicative"}
_ABSENT_KEYS = {"supported", "missing", "source", "note"}
_MODE_KEYS = {"power", "peak", "memory_bandwidth", "note"}
_KIND_KEYS = {"name", "stack", "measurable", "measurable_note", "precisions", "fp32_runs_as", "prior"}
_POINT_KEYS = {"result", "items_s", "devices", "gflop_per_item", "peak_tflops", "source"}
_TOP_KEYS = {"schema_version", "catalog_version", "updated", "devices", "kinds"}
_YEAR = re.compile(r"\b(19|20)\d{2}\b")
_DATE = re.compile(r"^\d{4}(-\d{2})?$")
_KEY = re.compile(r"^[a-z0-9][a-z0-9.+-]*$")


@dataclass(frozen=True)
class Figure:
    """One sourced number, in SI units (``value``; ``sparse`` for with-sparsity peaks)."""

    value: float
    unit: str  # as written in the file, for display
    source: str
    sparse: float | None = None
    date: str | None = None
    note: str | None = None
    indicative: bool = False

    def scaled(self, factor: float) -> Figure:
        sparse = None if self.sparse is None else self.sparse * factor
        return replace(self, value=self.value * factor, sparse=sparse)


@dataclass(frozen=True)
class PriorPoint:
    """One published result: ``items_s`` on ``devices`` devices of ``gflop_per_item`` GFLOP (or GOP) each,
    against a peak of ``peak_tflops`` TFLOPS (or TOPS) per device."""

    result: str
    items_s: float
    devices: int
    gflop_per_item: float
    peak_tflops: float
    source: str

    @property
    def efficiency(self) -> float:
        """The achieved fraction of the peak: per-device rate x work per item / peak."""
        return self.items_s / self.devices * self.gflop_per_item * 1e9 / (self.peak_tflops * 1e12)


@dataclass(frozen=True)
class Prior:
    """A kind's documented efficiency: the median of its published points, and their spread."""

    points: tuple[PriorPoint, ...]

    @property
    def value(self) -> float:
        return float(statistics.median(p.efficiency for p in self.points))

    @property
    def lo(self) -> float:
        return min(p.efficiency for p in self.points)

    @property
    def hi(self) -> float:
        return max(p.efficiency for p in self.points)


@dataclass(frozen=True)
class KindSpec:
    """What genbench knows of one kind of hardware (the file's ``[kinds.<kind>]``)."""

    kind: str
    name: str
    stack: str
    measurable: bool
    measurable_note: str
    precisions: tuple[str, ...]
    fp32_runs_as: str | None = None  # the precision an fp32 model's matmuls run in on this stack
    fp32_runs_as_source: str = ""
    prior: Prior | None = None


@dataclass(frozen=True)
class PowerMode:
    """A power mode: the power it draws and the figures the vendor gives for it (often none but the power)."""

    name: str
    power: Figure
    peak: dict[str, Figure] = field(default_factory=dict)
    memory_bandwidth: Figure | None = None
    note: str = ""


@dataclass(frozen=True)
class DeviceSpec:
    """A device as projections see it. ``peak[p]`` is None where precision ``p`` is unsupported or missing.

    Measured devices (from bench.hardware.peak) have no price or TDP, hence the Optionals;
    so do catalogue entries whose vendor publishes none (``missing`` says why, keyed
    ``peak.<precision>`` or the field's name).
    """

    key: str
    name: str
    kind: str
    per: str
    peak: dict[str, Figure | None]
    memory: Figure
    memory_bandwidth: Figure
    tdp: Figure | None = None
    price: Figure | None = None
    cloud_price: Figure | None = None
    aliases: tuple[str, ...] = ()
    notes: str = ""
    unsupported: dict[str, str] = field(default_factory=dict)  # precision -> source saying so
    missing: dict[str, str] = field(
        default_factory=dict
    )  # "peak.fp16" or "tdp" -> source saying none is given
    origin: str = "built-in"
    count: int = 1  # cores, for a per-core entry scaled with "key:N"
    shared_memory: bool = (
        False  # memory shared with the CPU (an edge SoC): the OS and runtime keep os_reserve
    )
    os_reserve: Figure | None = None
    power_modes: dict[str, PowerMode] = field(default_factory=dict)
    top_mode: str | None = None  # the mode the device's headline figures are for
    mode: str | None = None  # the power mode this spec is at ("key@mode"), None for the headline figures
    kind_info: KindSpec | None = None

    def peak_flops(self, precision: str) -> float | None:
        figure = self.peak.get(precision)
        return None if figure is None else figure.value

    @property
    def memory_bytes(self) -> float:
        return self.memory.value

    @property
    def usable_memory_bytes(self) -> float:
        """Memory a model may use: all of it, less the OS's share on a device that shares it with the CPU."""
        reserve = self.os_reserve.value if self.shared_memory and self.os_reserve is not None else 0.0
        return self.memory.value - reserve

    @property
    def bandwidth_bytes_s(self) -> float:
        return self.memory_bandwidth.value

    @property
    def calibrated(self) -> bool:
        """Whether a measured device's efficiency carries over: only to kinds genbench can measure on."""
        return self.kind_info is None or self.kind_info.measurable

    @property
    def label(self) -> str:
        base = self.key if self.count == 1 else f"{self.key}:{self.count}"
        return base if self.mode is None else f"{base}@{self.mode}"

    def times(self, count: int) -> DeviceSpec:
        """``count`` cores of a per-core entry: every figure scaled linearly.

        Linear scaling of bandwidth, power and price with cores is an assumption
        (a share of the socket), stated wherever such a target is printed.
        """
        if count == self.count:
            return self
        factor = count / self.count

        def scale(fig: Figure | None) -> Figure | None:
            return None if fig is None else fig.scaled(factor)

        return replace(
            self,
            peak={p: scale(f) for p, f in self.peak.items()},
            memory=self.memory.scaled(factor),
            memory_bandwidth=self.memory_bandwidth.scaled(factor),
            tdp=scale(self.tdp),
            price=scale(self.price),
            cloud_price=scale(self.cloud_price),
            count=count,
        )

    def at_mode(self, name: str) -> DeviceSpec:
        """The device in power mode ``name``: the mode's power as its TDP, and the mode's own figures.

        The headline figures hold in ``top_mode`` only. In another mode, a peak the vendor
        gives for that mode replaces the headline one and every other peak is missing
        (clocks differ per mode, so the top mode's peak would overstate it); the bandwidth
        is the mode's where given, else the headline one, and the spec's notes say so.
        """
        mode = self.power_modes[name]
        if name == self.top_mode:
            return replace(self, tdp=mode.power, mode=name)
        peak: dict[str, Figure | None] = {}
        missing = {k: v for k, v in self.missing.items() if not k.startswith("peak.")}
        for precision in PRECISIONS:
            given = mode.peak.get(precision)
            peak[precision] = given
            if given is None and precision not in self.unsupported:
                missing[f"peak.{precision}"] = (
                    f"the vendor gives no {precision} peak for the {name} mode, only its power "
                    f"({mode.power.source}); add one under power_modes.{name}.peak with --catalog"
                )
        notes = self.notes
        bandwidth = mode.memory_bandwidth
        if bandwidth is None:
            bandwidth = self.memory_bandwidth
            notes = "; ".join(filter(None, [notes, f"bandwidth in the {name} mode: the top mode's"]))
        return replace(
            self,
            peak=peak,
            missing=missing,
            memory_bandwidth=bandwidth,
            tdp=mode.power,
            mode=name,
            notes=notes,
        )


def normalize(name: str) -> str:
    """Lower case, spaces/underscores/parentheses folded to '-' so "NVIDIA L4" matches "nvidia-l4"."""
    text = re.sub(r"[\s_()]+", "-", name.strip().lower())
    return re.sub(r"-+", "-", text).strip("-")


def did_you_mean(name: str, options: list[str], cutoff: float = 0.5) -> str:
    """'; did you mean a, b?' for the options close to ``name`` (normalized), else ''."""
    close = difflib.get_close_matches(normalize(name), options, n=4, cutoff=cutoff)
    return f"; did you mean {', '.join(close)}?" if close else ""


@dataclass(frozen=True)
class Catalog:
    devices: dict[str, DeviceSpec]
    version: str
    files: tuple[str, ...]
    kinds: dict[str, KindSpec] = field(default_factory=dict)

    def _names(self) -> dict[str, str]:
        names: dict[str, str] = {}
        for key, spec in self.devices.items():
            names[normalize(key)] = key
            for alias in spec.aliases:
                names[normalize(alias)] = key
        return names

    def match(self, device_name: str) -> DeviceSpec | None:
        """The entry whose key or alias equals ``device_name`` (normalized), else None.

        Used to recognize the device a run was measured on from its ``device_name``
        column (torch's GPU name or the CPU model string), so aliases hold those strings.
        """
        key = self._names().get(normalize(device_name))
        return None if key is None else self.devices[key]

    def find(self, text: str) -> DeviceSpec:
        """Resolve a user-typed target: a key or alias, ``:N`` for N cores of a per-core entry, ``@MODE``
        for a power mode (``jetson-orin-nano@7w``)."""
        head, _, mode = text.strip().partition("@")
        name, _, count_text = head.partition(":")
        spec = self.match(name)
        if spec is None:
            names = self._names()
            close = difflib.get_close_matches(normalize(name), list(names), n=4, cutoff=0.5)
            keys = list(dict.fromkeys(names[c] for c in close))
            hint = f"; did you mean {', '.join(keys)}?" if keys else ""
            raise UnknownDeviceError(
                f"unknown device {name!r}{hint} (`python -m bench devices` lists {len(self.devices)} devices)"
            )
        if count_text:
            if spec.per != "core":
                raise UnknownDeviceError(
                    f"{spec.key!r} is a whole device; ':N' counts cores of per-core entries only"
                )
            if not count_text.isdigit() or int(count_text) < 1:
                raise UnknownDeviceError(f"bad core count in {text!r}; use {spec.key}:N with N >= 1")
            spec = spec.times(int(count_text))
        if not mode:
            if "@" in text:
                raise UnknownDeviceError(f"empty power mode in {text!r}; use {spec.key}@MODE")
            return spec
        modes = {normalize(m): m for m in spec.power_modes}
        if normalize(mode) not in modes:
            if not modes:
                raise UnknownDeviceError(f"{spec.key!r} has no power modes in the catalogue; drop '@{mode}'")
            hint = did_you_mean(mode, list(modes), cutoff=0.3)
            raise UnknownDeviceError(
                f"unknown power mode {mode!r} of {spec.key}{hint} (modes: {', '.join(spec.power_modes)})"
            )
        return spec.at_mode(modes[normalize(mode)])

    def of_kinds(self, kinds: list[str]) -> Catalog:
        """The catalogue restricted to devices of ``kinds``; an unknown kind is a one-line error."""
        for kind in kinds:
            if kind not in KINDS:
                hint = did_you_mean(kind, list(KINDS), cutoff=0.6)
                raise CatalogError(f"unknown device kind {kind!r}{hint} (kinds: {', '.join(KINDS)})")
        devices = {k: s for k, s in self.devices.items() if s.kind in kinds}
        return replace(self, devices=devices)


# ----------------------------------------------------------------- loading
def builtin_path() -> Any:
    """The packaged catalogue (a Traversable; a plain Path in a source checkout)."""
    return resources.files("bench.hardware") / "devices.toml"


def load_catalog(extra: Path | str | None = None) -> Catalog:
    """The built-in catalogue, with ``extra``'s entries merged over it (same key: replaced whole)."""
    builtin = builtin_path()
    raw = _parse_toml(builtin.read_text(encoding="utf-8"), "devices.toml (built-in)")
    devices, kinds, version = _validate_file(raw, "devices.toml (built-in)", "built-in")
    missing_kinds = [k for k in KINDS if k not in kinds]
    if missing_kinds:
        raise CatalogError(f"devices.toml (built-in): kinds: missing [kinds.{missing_kinds[0]}]")
    files = ["built-in"]
    if extra is not None:
        path = Path(extra)
        if not path.is_file():
            raise CatalogError(f"catalogue file {path} does not exist")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CatalogError(f"{path}: cannot read: {exc}") from None
        user, user_kinds, _ = _validate_file(
            _parse_toml(text, str(path)), str(path), str(path), optional=True
        )
        devices = {**devices, **user}
        kinds = {**kinds, **user_kinds}
        files.append(str(path))
    _check_unique_names(devices)
    devices = {key: replace(spec, kind_info=kinds.get(spec.kind)) for key, spec in devices.items()}
    return Catalog(devices=devices, version=version, files=tuple(files), kinds=kinds)


def _parse_toml(text: str, where: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{where}: not valid TOML: {exc}") from None


def _fail(where: str, path: str, message: str) -> CatalogError:
    return CatalogError(f"{where}: {path}: {message}")


def _unknown(where: str, path: str, got: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(got) - allowed)
    if unknown:
        raise _fail(
            where, path, f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )


def _validate_file(
    raw: dict[str, Any], where: str, origin: str, optional: bool = False
) -> tuple[dict[str, DeviceSpec], dict[str, KindSpec], str]:
    """Devices and kinds of one file; a user file (``optional``) may give either table alone."""
    _unknown(where, "top level", raw, _TOP_KEYS)
    if raw.get("schema_version") != SCHEMA_VERSION:
        raise _fail(where, "schema_version", f"must be {SCHEMA_VERSION}, got {raw.get('schema_version')!r}")
    devices = raw.get("devices", {} if optional and "kinds" in raw else None)
    if not isinstance(devices, dict) or (not devices and "kinds" not in raw):
        raise _fail(where, "devices", "missing or empty: add [devices.<key>] tables")
    kinds_raw = raw.get("kinds", {})
    if not isinstance(kinds_raw, dict):
        raise _fail(where, "kinds", "must be a table of [kinds.<kind>] tables")
    kinds = {kind: _validate_kind(kind, entry, where) for kind, entry in kinds_raw.items()}
    specs = {key: _validate_device(key, entry, where, origin) for key, entry in devices.items()}
    return specs, kinds, str(raw.get("catalog_version", ""))


def _validate_kind(kind: str, entry: Any, where: str) -> KindSpec:
    path = f"kinds.{kind}"
    if kind not in KINDS:
        raise _fail(where, path, f"unknown kind; kinds are {', '.join(KINDS)}")
    if not isinstance(entry, dict):
        raise _fail(where, path, "must be a table")
    _unknown(where, path, entry, _KIND_KEYS)
    for required in ("name", "stack", "measurable_note"):
        if not isinstance(entry.get(required), str) or not entry[required].strip():
            raise _fail(where, f"{path}.{required}", "must be a non-empty string")
    measurable = entry.get("measurable")
    if not isinstance(measurable, bool):
        raise _fail(where, f"{path}.measurable", "must be true or false")
    precisions = entry.get("precisions")
    if not isinstance(precisions, list) or not precisions or any(p not in PRECISIONS for p in precisions):
        raise _fail(where, f"{path}.precisions", f"must be a list of {', '.join(PRECISIONS)}")
    runs_as, runs_as_source = None, ""
    if "fp32_runs_as" in entry:
        value = entry["fp32_runs_as"]
        if not isinstance(value, dict):
            raise _fail(where, f"{path}.fp32_runs_as", "must be { precision = ..., source = ... }")
        _unknown(where, f"{path}.fp32_runs_as", value, {"precision", "source"})
        if value.get("precision") not in PRECISIONS:
            raise _fail(where, f"{path}.fp32_runs_as.precision", f"must be one of {', '.join(PRECISIONS)}")
        runs_as, runs_as_source = value["precision"], _source(value, f"{path}.fp32_runs_as", where)
    prior = None
    if "prior" in entry:
        points = entry["prior"]
        if not isinstance(points, list) or not points:
            raise _fail(where, f"{path}.prior", "must be a list of [[kinds.<kind>.prior]] points")
        prior = Prior(tuple(_prior_point(p, f"{path}.prior[{i}]", where) for i, p in enumerate(points)))
    if not measurable and prior is None:
        raise _fail(where, f"{path}.prior", "a kind genbench cannot measure needs a prior efficiency")
    return KindSpec(
        kind=kind,
        name=entry["name"].strip(),
        stack=entry["stack"].strip(),
        measurable=measurable,
        measurable_note=entry["measurable_note"].strip(),
        precisions=tuple(precisions),
        fp32_runs_as=runs_as,
        fp32_runs_as_source=runs_as_source,
        prior=prior,
    )


def _prior_point(raw: Any, path: str, where: str) -> PriorPoint:
    if not isinstance(raw, dict):
        raise _fail(where, path, "must be a table")
    _unknown(where, path, raw, _POINT_KEYS)
    missing = sorted(_POINT_KEYS - set(raw))
    if missing:
        raise _fail(where, path, f"missing field(s) {', '.join(missing)}")
    if not isinstance(raw["result"], str) or not raw["result"].strip():
        raise _fail(where, f"{path}.result", "must name the published result")
    numbers = {}
    for name in ("items_s", "gflop_per_item", "peak_tflops", "devices"):
        value = raw[name]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise _fail(where, f"{path}.{name}", f"must be a positive number, got {value!r}")
        numbers[name] = value
    if not isinstance(numbers["devices"], int):
        raise _fail(where, f"{path}.devices", "must be a whole number of devices")
    point = PriorPoint(
        result=raw["result"].strip(),
        items_s=float(numbers["items_s"]),
        devices=int(numbers["devices"]),
        gflop_per_item=float(numbers["gflop_per_item"]),
        peak_tflops=float(numbers["peak_tflops"]),
        source=_source(raw, path, where),
    )
    if point.efficiency > 1.0:
        raise _fail(where, path, f"efficiency {point.efficiency:.2f} is above the peak: check the figures")
    return point


def _validate_device(key: str, entry: Any, where: str, origin: str) -> DeviceSpec:
    path = f"devices.{key}"
    if not _KEY.match(key):
        raise _fail(where, path, "keys are lower case letters, digits, '.', '+', '-'")
    if not isinstance(entry, dict):
        raise _fail(where, path, "must be a table")
    _unknown(where, path, entry, DEVICE_KEYS)
    missing_fields = sorted((DEVICE_KEYS - _OPTIONAL_KEYS) - set(entry))
    if missing_fields:
        raise _fail(where, path, f"missing field(s) {', '.join(missing_fields)}")
    name = entry["name"]
    if not isinstance(name, str) or not name.strip():
        raise _fail(where, f"{path}.name", "must be a non-empty string")
    aliases = entry["aliases"]
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
        raise _fail(where, f"{path}.aliases", "must be a list of non-empty strings")
    if entry["kind"] not in KINDS:
        raise _fail(where, f"{path}.kind", f"must be one of {', '.join(KINDS)}, got {entry['kind']!r}")
    if entry["per"] not in PER:
        raise _fail(where, f"{path}.per", f"must be one of {', '.join(PER)}, got {entry['per']!r}")
    notes = entry.get("notes", "")
    if not isinstance(notes, str):
        raise _fail(where, f"{path}.notes", "must be a string")
    absent: dict[str, str] = {}
    figures: dict[str, Figure | None] = {}
    for f in FIGURE_FIELDS:
        value = entry[f]
        if isinstance(value, dict) and "missing" in value:
            if f not in MAY_BE_MISSING:
                raise _fail(where, f"{path}.{f}", "cannot be missing: the roofline needs it")
            absent[f] = _absent(value, "missing", f"{path}.{f}", where)
            figures[f] = None
        else:
            figures[f] = _figure(value, f, f"{path}.{f}", where)
    peak, unsupported, missing_peaks = _peaks(entry["peak"], f"{path}.peak", where, require_all=True)
    absent.update({f"peak.{p}": why for p, why in missing_peaks.items()})
    if all(v is None for v in peak.values()):
        raise _fail(where, f"{path}.peak", "every device must give at least one peak")
    shared = entry.get("shared_memory", False)
    if not isinstance(shared, bool):
        raise _fail(where, f"{path}.shared_memory", "must be true or false")
    os_reserve = None
    if "os_reserve" in entry:
        if not shared:
            raise _fail(where, f"{path}.os_reserve", "only for shared_memory = true devices")
        os_reserve = _figure(entry["os_reserve"], "os_reserve", f"{path}.os_reserve", where)
        assert figures["memory"] is not None
        if os_reserve.value >= figures["memory"].value:
            raise _fail(where, f"{path}.os_reserve", "leaves no memory for the model")
    modes, top_mode = _power_modes(entry, path, where)
    memory, bandwidth = figures["memory"], figures["memory_bandwidth"]
    assert memory is not None and bandwidth is not None
    return DeviceSpec(
        key=key,
        name=name.strip(),
        kind=entry["kind"],
        per=entry["per"],
        peak=peak,
        memory=memory,
        memory_bandwidth=bandwidth,
        tdp=figures["tdp"],
        price=figures["price"],
        cloud_price=figures["cloud_price"],
        aliases=tuple(a.strip() for a in aliases),
        notes=notes,
        unsupported=unsupported,
        missing=absent,
        origin=origin,
        shared_memory=shared,
        os_reserve=os_reserve,
        power_modes=modes,
        top_mode=top_mode,
    )


def _peaks(
    raw: Any, path: str, where: str, require_all: bool
) -> tuple[dict[str, Figure | None], dict[str, str], dict[str, str]]:
    """A peak table: figures, and the precisions it says are unsupported or missing (with their sources)."""
    if not isinstance(raw, dict):
        raise _fail(where, path, "must be a table of precisions")
    _unknown(where, path, raw, set(PRECISIONS))
    if require_all:
        missing_p = [p for p in PRECISIONS if p not in raw]
        if missing_p:
            raise _fail(
                where,
                path,
                f"missing precision(s) {', '.join(missing_p)} (use supported = false, or missing = true "
                "where the vendor gives no figure)",
            )
    peak: dict[str, Figure | None] = {}
    unsupported: dict[str, str] = {}
    missing: dict[str, str] = {}
    for precision in PRECISIONS:
        if precision not in raw:
            continue
        ppath = f"{path}.{precision}"
        value = raw[precision]
        if isinstance(value, dict) and "supported" in value:
            unsupported[precision] = _absent(value, "supported", ppath, where)
            peak[precision] = None
        elif isinstance(value, dict) and "missing" in value:
            missing[precision] = _absent(value, "missing", ppath, where)
            peak[precision] = None
        else:
            peak[precision] = _figure(value, f"peak.{precision}", ppath, where)
    return peak, unsupported, missing


def _absent(raw: dict[str, Any], flag: str, path: str, where: str) -> str:
    """The source of a figure that is not there: ``supported = false`` (the hardware lacks it) or
    ``missing = true`` (the vendor publishes none)."""
    _unknown(where, path, raw, _ABSENT_KEYS)
    if "supported" in raw and "missing" in raw:
        raise _fail(where, path, "either supported = false or missing = true, not both")
    expected = flag == "missing"  # supported = false, missing = true
    if raw[flag] is not expected:
        if flag == "supported":
            raise _fail(where, path, "'supported' may only be false; give value, unit, source otherwise")
        raise _fail(where, path, "'missing' may only be true; give value, unit, source otherwise")
    return _source(raw, path, where)


def _power_modes(entry: dict[str, Any], path: str, where: str) -> tuple[dict[str, PowerMode], str | None]:
    raw = entry.get("power_modes")
    top = entry.get("top_mode")
    if raw is None:
        if top is not None:
            raise _fail(where, f"{path}.top_mode", "only with power_modes")
        return {}, None
    if not isinstance(raw, dict) or not raw:
        raise _fail(where, f"{path}.power_modes", "must be a table of [power_modes.<mode>] tables")
    modes: dict[str, PowerMode] = {}
    for name, mode in raw.items():
        mpath = f"{path}.power_modes.{name}"
        if not _KEY.match(name):
            raise _fail(where, mpath, "mode names are lower case letters, digits, '.', '+', '-'")
        if not isinstance(mode, dict):
            raise _fail(where, mpath, "must be a table")
        _unknown(where, mpath, mode, _MODE_KEYS)
        if "power" not in mode:
            raise _fail(where, mpath, "missing power")
        peak_raw = mode.get("peak", {})
        peaks, unsupported, missing = _peaks(peak_raw, f"{mpath}.peak", where, require_all=False)
        if unsupported or missing:
            raise _fail(
                where, f"{mpath}.peak", "give a mode's peaks as figures; leave out the ones not given"
            )
        note = mode.get("note", "")
        if not isinstance(note, str):
            raise _fail(where, f"{mpath}.note", "must be a string")
        bandwidth = mode.get("memory_bandwidth")
        modes[name] = PowerMode(
            name=name,
            power=_figure(mode["power"], "power", f"{mpath}.power", where),
            peak={p: f for p, f in peaks.items() if f is not None},
            memory_bandwidth=None
            if bandwidth is None
            else _figure(bandwidth, "memory_bandwidth", f"{mpath}.memory_bandwidth", where),
            note=note,
        )
    if top not in modes:
        raise _fail(
            where, f"{path}.top_mode", f"must name the mode the headline figures are for: {', '.join(modes)}"
        )
    return modes, top


def _source(raw: dict[str, Any], path: str, where: str) -> str:
    source = raw.get("source")
    if not isinstance(source, str) or not source.strip():
        raise _fail(where, path, "missing source: say where the figure comes from, with the year")
    if not _YEAR.search(source):
        raise _fail(where, path, f"source {source!r} has no year; write e.g. 'NVIDIA H100 datasheet (2023)'")
    return source.strip()


def _figure(raw: Any, kind: str, path: str, where: str) -> Figure:
    if not isinstance(raw, dict):
        raise _fail(where, path, "must be a table like { value = 1.0, unit = ..., source = ... }")
    _unknown(where, path, raw, _FIGURE_KEYS)
    for required in ("value", "unit"):
        if required not in raw:
            raise _fail(where, path, f"missing {required}")
    value = raw["value"]
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise _fail(where, path, f"value must be a positive number, got {value!r}")
    units = UNITS[kind]
    unit = raw["unit"]
    if unit not in units:
        raise _fail(where, path, f"unit {unit!r} not accepted here; use {' or '.join(units)}")
    factor = units[unit]
    source = _source(raw, path, where)
    sparse = raw.get("sparse")
    if sparse is not None:
        if not kind.startswith("peak."):
            raise _fail(where, path, "'sparse' applies to peak throughput only")
        if isinstance(sparse, bool) or not isinstance(sparse, int | float) or sparse < value:
            raise _fail(where, path, f"sparse must be a number >= the dense value, got {sparse!r}")
    date = raw.get("date")
    if date is not None and (not isinstance(date, str) or not _DATE.match(date)):
        raise _fail(where, path, f"date must be 'YYYY' or 'YYYY-MM', got {date!r}")
    indicative = raw.get("indicative", False)
    if not isinstance(indicative, bool):
        raise _fail(where, path, "indicative must be true or false")
    if kind in ("price", "cloud_price"):
        if date is None:
            raise _fail(where, path, "prices need a date ('YYYY' or 'YYYY-MM')")
        if indicative is not True:
            raise _fail(where, path, "prices must be marked indicative = true")
    note = raw.get("note")
    if note is not None and not isinstance(note, str):
        raise _fail(where, path, "note must be a string")
    return Figure(
        value=float(value) * factor,
        unit=unit,
        source=source,
        sparse=None if sparse is None else float(sparse) * factor,
        date=date,
        note=note,
        indicative=indicative,
    )


def _check_unique_names(devices: dict[str, DeviceSpec]) -> None:
    """One name, one device: an alias shared by two entries would make matching a coin toss."""
    seen: dict[str, str] = {}
    for key, spec in devices.items():
        for name in {normalize(key), *(normalize(a) for a in spec.aliases)}:
            if name in seen and seen[name] != key:
                raise CatalogError(f"name {name!r} is used by both devices.{seen[name]} and devices.{key}")
            seen[name] = key
