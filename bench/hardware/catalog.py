"""The device catalogue: vendor figures for hardware you may not own.

The figures live in a data file (``bench/data/devices.toml``), not in code, so
they can be reviewed, versioned and overridden (``--catalog FILE``) without
touching Python. Loading validates everything a projection relies on, because a
wrong unit or a missing source silently corrupts every number derived from it:

- unknown keys are rejected at every level (a typo is an error, not a default);
- every device has every field, and every peak precision is either a figure or
  ``supported = false``;
- units are checked per field and converted to SI (FLOP/s, bytes, bytes/s, W,
  USD, USD/h), so the rest of the code never sees "TB/s";
- every figure names its source, with a year; prices also carry a date and
  ``indicative = true``.

Stdlib only (tomllib, difflib) besides genbench's errors: ``bench devices`` starts fast and this module is
safe to import anywhere.
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from bench.core.errors import CatalogError, UnknownDeviceError
from bench.core.precision import PEAK_PRECISIONS

SCHEMA_VERSION = 1
PRECISIONS = PEAK_PRECISIONS  # every catalogue entry gives each, or says it is unsupported
KINDS = ("gpu", "cpu", "accelerator")
PER = ("device", "core")

_FLOPS_UNITS = {"GFLOPS": 1e9, "TFLOPS": 1e12, "PFLOPS": 1e15}
_OPS_UNITS = {"GOPS": 1e9, "TOPS": 1e12, "POPS": 1e15}
#: field -> accepted units and their factor to SI
UNITS: dict[str, dict[str, float]] = {
    "memory": {"MiB": 2.0**20, "GiB": 2.0**30, "TiB": 2.0**40, "GB": 1e9, "TB": 1e12},
    "memory_bandwidth": {"GB/s": 1e9, "TB/s": 1e12},
    "tdp": {"W": 1.0},
    "price": {"USD": 1.0},
    "cloud_price": {"USD/h": 1.0},
    **{f"peak.{p}": (_OPS_UNITS if p == "int8" else _FLOPS_UNITS) for p in PRECISIONS},
}
FIGURE_FIELDS = ("memory", "memory_bandwidth", "tdp", "price", "cloud_price")
DEVICE_KEYS = {"name", "aliases", "kind", "per", "peak", "notes", *FIGURE_FIELDS}
_FIGURE_KEYS = {"value", "unit", "source", "sparse", "note", "date", "indicative"}
_UNSUPPORTED_KEYS = {"supported", "source", "note"}
_TOP_KEYS = {"schema_version", "catalog_version", "updated", "devices"}
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
class DeviceSpec:
    """A device as projections see it. ``peak[p]`` is None where precision ``p`` is unsupported.

    Measured devices (from bench.hardware.peak) have no price or TDP, hence the Optionals;
    catalogue entries always have them (validation insists).
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
    origin: str = "built-in"
    count: int = 1  # cores, for a per-core entry scaled with "key:N"

    def peak_flops(self, precision: str) -> float | None:
        figure = self.peak.get(precision)
        return None if figure is None else figure.value

    @property
    def memory_bytes(self) -> float:
        return self.memory.value

    @property
    def bandwidth_bytes_s(self) -> float:
        return self.memory_bandwidth.value

    @property
    def label(self) -> str:
        return self.key if self.count == 1 else f"{self.key}:{self.count}"

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


def normalize(name: str) -> str:
    """Lower case, spaces/underscores/parentheses folded to '-' so "NVIDIA L4" matches "nvidia-l4"."""
    text = re.sub(r"[\s_()]+", "-", name.strip().lower())
    return re.sub(r"-+", "-", text).strip("-")


@dataclass(frozen=True)
class Catalog:
    devices: dict[str, DeviceSpec]
    version: str
    files: tuple[str, ...]

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
        """Resolve a user-typed target: a key or alias, with ``:N`` for N cores of a per-core entry."""
        name, _, count_text = text.strip().partition(":")
        spec = self.match(name)
        if spec is None:
            names = self._names()
            close = difflib.get_close_matches(normalize(name), list(names), n=4, cutoff=0.5)
            keys = list(dict.fromkeys(names[c] for c in close))
            hint = f"; did you mean {', '.join(keys)}?" if keys else ""
            raise UnknownDeviceError(
                f"unknown device {name!r}{hint} (`python -m bench devices` lists {len(self.devices)} devices)"
            )
        if not count_text:
            return spec
        if spec.per != "core":
            raise UnknownDeviceError(
                f"{spec.key!r} is a whole device; ':N' counts cores of per-core entries only"
            )
        if not count_text.isdigit() or int(count_text) < 1:
            raise UnknownDeviceError(f"bad core count in {text!r}; use {spec.key}:N with N >= 1")
        return spec.times(int(count_text))


# ----------------------------------------------------------------- loading
def builtin_path() -> Any:
    """The packaged catalogue (a Traversable; a plain Path in a source checkout)."""
    return resources.files("bench.hardware") / "devices.toml"


def load_catalog(extra: Path | str | None = None) -> Catalog:
    """The built-in catalogue, with ``extra``'s entries merged over it (same key: replaced whole)."""
    builtin = builtin_path()
    raw = _parse_toml(builtin.read_text(encoding="utf-8"), "devices.toml (built-in)")
    devices, version = _validate_file(raw, "devices.toml (built-in)", "built-in")
    files = ["built-in"]
    if extra is not None:
        path = Path(extra)
        if not path.is_file():
            raise CatalogError(f"catalogue file {path} does not exist")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CatalogError(f"{path}: cannot read: {exc}") from None
        user, _ = _validate_file(_parse_toml(text, str(path)), str(path), str(path))
        devices = {**devices, **user}
        files.append(str(path))
    _check_unique_names(devices)
    return Catalog(devices=devices, version=version, files=tuple(files))


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


def _validate_file(raw: dict[str, Any], where: str, origin: str) -> tuple[dict[str, DeviceSpec], str]:
    _unknown(where, "top level", raw, _TOP_KEYS)
    if raw.get("schema_version") != SCHEMA_VERSION:
        raise _fail(where, "schema_version", f"must be {SCHEMA_VERSION}, got {raw.get('schema_version')!r}")
    devices = raw.get("devices")
    if not isinstance(devices, dict) or not devices:
        raise _fail(where, "devices", "missing or empty: add [devices.<key>] tables")
    specs = {key: _validate_device(key, entry, where, origin) for key, entry in devices.items()}
    return specs, str(raw.get("catalog_version", ""))


def _validate_device(key: str, entry: Any, where: str, origin: str) -> DeviceSpec:
    path = f"devices.{key}"
    if not _KEY.match(key):
        raise _fail(where, path, "keys are lower case letters, digits, '.', '+', '-'")
    if not isinstance(entry, dict):
        raise _fail(where, path, "must be a table")
    _unknown(where, path, entry, DEVICE_KEYS)
    missing = sorted((DEVICE_KEYS - {"notes"}) - set(entry))
    if missing:
        raise _fail(where, path, f"missing field(s) {', '.join(missing)}")
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
    figures = {f: _figure(entry[f], f, f"{path}.{f}", where) for f in FIGURE_FIELDS}
    peak_raw = entry["peak"]
    if not isinstance(peak_raw, dict):
        raise _fail(where, f"{path}.peak", "must be a table of precisions")
    _unknown(where, f"{path}.peak", peak_raw, set(PRECISIONS))
    missing_p = [p for p in PRECISIONS if p not in peak_raw]
    if missing_p:
        raise _fail(
            where, f"{path}.peak", f"missing precision(s) {', '.join(missing_p)} (use supported = false)"
        )
    peak: dict[str, Figure | None] = {}
    unsupported: dict[str, str] = {}
    for precision in PRECISIONS:
        ppath = f"{path}.peak.{precision}"
        value = peak_raw[precision]
        if isinstance(value, dict) and "supported" in value:
            _unknown(where, ppath, value, _UNSUPPORTED_KEYS)
            if value["supported"] is not False:
                raise _fail(where, ppath, "'supported' may only be false; give value, unit, source otherwise")
            unsupported[precision] = _source(value, ppath, where)
            peak[precision] = None
        else:
            peak[precision] = _figure(value, f"peak.{precision}", ppath, where)
    if peak["fp32"] is None:
        raise _fail(where, f"{path}.peak.fp32", "every device must give an fp32 peak")
    return DeviceSpec(
        key=key,
        name=name.strip(),
        kind=entry["kind"],
        per=entry["per"],
        peak=peak,
        memory=figures["memory"],
        memory_bandwidth=figures["memory_bandwidth"],
        tdp=figures["tdp"],
        price=figures["price"],
        cloud_price=figures["cloud_price"],
        aliases=tuple(a.strip() for a in aliases),
        notes=notes,
        unsupported=unsupported,
        origin=origin,
    )


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
