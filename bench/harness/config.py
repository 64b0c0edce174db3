"""The run matrix as a frozen, validated dataclass; from a TOML file plus CLI overrides.

Imports nothing heavy: building a config must be instant and free of side effects,
so the CLI can reject bad input before torch is even imported.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from bench.core.device import parse_device
from bench.core.errors import ConfigError
from bench.core.text import did_you_mean

SIZES: tuple[str, ...] = ("tiny", "small", "base")
#: seeds are what numpy.random.seed takes (a custom model may seed numpy with it); torch takes up to
#: 2**64-1, so the calibration seeds drawn above the run's seed (seed + 1000 + i) fit torch too
MAX_SEED = 2**32 - 1
#: the largest batch size (and thread count, sample count, repeat count) a run accepts: what a C int
#: holds, as torch's threading and many kernels' batch indexing do; far above what fits in memory
MAX_COUNT = 2**31 - 1
#: SamplingPolicy.max_samples: a run asking for more samples than sampling ever takes is refused here,
#: not as an error row in every cell
MAX_MIN_SAMPLES = 100_000
#: seconds a cell's build may take before the cell counts as hung (see RunConfig.cell_timeout)
BUILD_ALLOWANCE_S = 300.0
#: the most sampling steps a run accepts: DDIM's leading spacing of a 1000-step schedule reaches timestep 1000 at 1000 steps
MAX_STEPS = 999

#: a run file's keys are the command line's flag names (``time-budget = 5``), each naming one field
FLAG_FIELDS: dict[str, str] = {
    "device": "device",
    "models": "models",
    "model": "custom_models",
    "size": "size",
    "pipelines": "pipelines",
    "batch-sizes": "batch_sizes",
    "out": "out",
    "time-budget": "time_budget_s",
    "min-samples": "min_samples",
    "warmup": "warmup_s",
    "min-psnr": "min_psnr_db",
    "seed": "seed",
    "keep-artifacts": "keep_artifacts",
    "include-transfers": "include_transfers",
    "isolation": "isolation",
    "cell-timeout": "cell_timeout_s",
    "threads": "threads",
    "repeats": "repeats",
    "prompt-len": "prompt_len",
    "new-tokens": "new_tokens",
    "kv-cache": "kv_cache",
    "min-token-match": "min_token_match",
    "steps": "steps",
    "guidance": "guidance",
    "sampler": "sampler",
    "weights": "weights",
}
ISOLATIONS: tuple[str, ...] = ("process", "none")
#: reference_models.causal_lm.CACHE_KINDS and reference_models.samplers.SAMPLERS (a test holds them equal):
#: written out here so that checking a config imports no model code
KV_CACHE_KINDS: tuple[str, ...] = ("static", "dynamic")
SAMPLER_NAMES: tuple[str, ...] = ("ddim", "euler")


@dataclass(frozen=True)
class WorkloadDefaults:
    """Generation lengths and sampling steps when the run does not give them, per kind of device.

    A GPU gets the lengths published LLM and Stable Diffusion benchmarks use (128-token
    prompt, 128 new tokens; 50 steps). A 2-core CPU gets lengths that keep the default
    matrix (gpt and ldm small among the image models) inside 10 minutes: 32 + 32 tokens
    and 10 steps.
    """

    prompt_len: int
    new_tokens: int
    steps: int


GPU_WORKLOAD_DEFAULTS = WorkloadDefaults(prompt_len=128, new_tokens=128, steps=50)
CPU_WORKLOAD_DEFAULTS = WorkloadDefaults(prompt_len=32, new_tokens=32, steps=10)


@dataclass(frozen=True)
class WorkloadSettings:
    """What the generate and sample workloads run, with every default resolved for the device."""

    prompt_len: int
    new_tokens: int
    kv_cache: str
    min_token_match: float
    steps: int
    guidance: float
    sampler: str


@dataclass(frozen=True)
class RunConfig:
    """One run: models x pipelines x batch sizes on one device.

    ``device`` None means the best device present; ``models`` None means every
    reference model (checked by name when the models are resolved, with the model
    list itself); ``pipelines`` None means every default pipeline that applies on
    that device.
    """

    device: str | None = None
    models: tuple[str, ...] | None = None
    custom_models: tuple[str, ...] = ()
    size: str = "small"
    pipelines: tuple[str, ...] | None = None
    batch_sizes: tuple[int, ...] = (1, 8)
    out: str | None = None
    time_budget_s: float = 2.0
    min_samples: int = 10
    warmup_s: float = 0.3
    min_psnr_db: float = 30.0
    seed: int = 0
    keep_artifacts: bool = False
    include_transfers: bool = False
    isolation: str = "process"
    cell_timeout_s: float | None = (
        None  # None: build allowance + 10x the cell's sampling time (see cell_timeout)
    )
    threads: int | None = None  # intra-op threads; None: every core this process may use
    repeats: int = 1
    # the generate workload (gpt, causal LMs); None: the device's default (WorkloadDefaults)
    prompt_len: int | None = None
    new_tokens: int | None = None
    kv_cache: str = "static"
    min_token_match: float = 0.9  # bench.measure.generation.DEFAULT_MIN_TOKEN_MATCH
    # the sample workload (ldm); None: the device's default
    steps: int | None = None
    guidance: float = 7.5
    sampler: str = "ddim"
    weights: str | None = None  # a safetensors checkpoint loaded into the (one) model of the run

    def __post_init__(self) -> None:
        self._check_types()
        if self.device is not None:
            try:
                parse_device(self.device)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        for path in self.custom_models:
            if ":" not in path:
                raise ConfigError(f"custom model {path!r} must look like pkg.module:factory")
        if self.models is not None and not self.models and not self.custom_models:
            raise ConfigError("no models selected")
        if self.size not in SIZES:
            raise ConfigError(
                f"unknown size {self.size!r}; choose from {', '.join(SIZES)}{did_you_mean(self.size, SIZES)}"
            )
        if not self.batch_sizes or any(not 1 <= b <= MAX_COUNT for b in self.batch_sizes):
            raise ConfigError(
                f"batch sizes must be positive integers up to {MAX_COUNT} (got {list(self.batch_sizes)})"
            )
        if self.pipelines is not None and not self.pipelines:
            raise ConfigError("no pipelines selected")
        # `not 0 < x < inf` rather than `x <= 0`: NaN compares false with everything, so it would pass
        if not 0 < self.time_budget_s < math.inf:
            raise ConfigError(f"--time-budget must be > 0 seconds and finite (got {self.time_budget_s})")
        if not 1 <= self.min_samples <= MAX_MIN_SAMPLES:
            raise ConfigError(f"--min-samples must be from 1 to {MAX_MIN_SAMPLES:,} (got {self.min_samples})")
        if not 0 <= self.warmup_s < math.inf:
            raise ConfigError(f"--warmup must be >= 0 seconds and finite (got {self.warmup_s})")
        if math.isnan(self.min_psnr_db) or self.min_psnr_db == -math.inf:
            raise ConfigError(
                f"--min-psnr must be a number of dB, or inf for bit-identical output only (got {self.min_psnr_db})"
            )
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"--seed must be from 0 to {MAX_SEED} (got {self.seed})")
        if self.isolation not in ISOLATIONS:
            raise ConfigError(
                f"unknown isolation {self.isolation!r}; choose from {', '.join(ISOLATIONS)}"
                f"{did_you_mean(self.isolation, ISOLATIONS)}"
            )
        if self.cell_timeout_s is not None and not 0 < self.cell_timeout_s < math.inf:
            raise ConfigError(
                f"--cell-timeout must be a positive number of seconds (got {self.cell_timeout_s})"
            )
        if self.threads is not None and not 1 <= self.threads <= MAX_COUNT:
            raise ConfigError(f"--threads must be from 1 to {MAX_COUNT} (got {self.threads})")
        if not 1 <= self.repeats <= MAX_COUNT:
            raise ConfigError(f"--repeats must be from 1 to {MAX_COUNT} (got {self.repeats})")
        self._check_workload()
        if not math.isfinite(self.cell_timeout()):
            raise ConfigError(
                f"--time-budget {self.time_budget_s} and --warmup {self.warmup_s} leave no finite cell timeout"
            )

    def _check_workload(self) -> None:
        for flag, value in (("--prompt-len", self.prompt_len), ("--new-tokens", self.new_tokens)):
            if value is not None and not 1 <= value <= MAX_COUNT:
                raise ConfigError(f"{flag} must be a positive number of tokens (got {value})")
        if self.steps is not None and not 1 <= self.steps <= MAX_STEPS:
            raise ConfigError(f"--steps must be from 1 to {MAX_STEPS} sampling steps (got {self.steps})")
        if self.kv_cache not in KV_CACHE_KINDS:
            raise ConfigError(
                f"unknown --kv-cache {self.kv_cache!r}; choose from {', '.join(KV_CACHE_KINDS)}"
                f"{did_you_mean(self.kv_cache, KV_CACHE_KINDS)}"
            )
        if self.sampler not in SAMPLER_NAMES:
            raise ConfigError(
                f"unknown --sampler {self.sampler!r}; choose from {', '.join(SAMPLER_NAMES)}"
                f"{did_you_mean(self.sampler, SAMPLER_NAMES)}"
            )
        if not 0 <= self.guidance < math.inf:
            raise ConfigError(
                f"--guidance must be a finite number >= 0 (got {self.guidance}; 1 turns it off)"
            )
        if not 0 <= self.min_token_match <= 1:
            raise ConfigError(f"--min-token-match must be a share from 0 to 1 (got {self.min_token_match})")
        if self.weights is not None and not self.weights.strip():
            raise ConfigError("--weights needs a .safetensors file")

    def workload_settings(self, on_gpu: bool) -> WorkloadSettings:
        """The generate and sample settings of this run on a GPU (``on_gpu``) or a CPU."""
        defaults = GPU_WORKLOAD_DEFAULTS if on_gpu else CPU_WORKLOAD_DEFAULTS
        return WorkloadSettings(
            prompt_len=self.prompt_len if self.prompt_len is not None else defaults.prompt_len,
            new_tokens=self.new_tokens if self.new_tokens is not None else defaults.new_tokens,
            kv_cache=self.kv_cache,
            min_token_match=float(self.min_token_match),
            steps=self.steps if self.steps is not None else defaults.steps,
            guidance=float(self.guidance),
            sampler=self.sampler,
        )

    def to_json(self) -> dict[str, Any]:
        """The config as JSON values (tuples as lists): what env.json records and a worker process receives."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> RunConfig:
        """The inverse of ``to_json``: lists back into the tuples the fields hold."""
        tuples = _TUPLE_FIELDS | _INT_TUPLE_FIELDS
        return cls(**{k: tuple(v) if k in tuples and v is not None else v for k, v in values.items()})

    def cell_timeout(self) -> float:
        """Seconds a worker may take for one cell before it is killed (``--cell-timeout``).

        The default allows a build (export, quantization, compile from a cold cache: 34 s
        measured for unet small on 2 cores) of ``BUILD_ALLOWANCE_S``, plus ten times the
        cell's warm-up and sampling time: a cell that runs 10x past its budget is hung,
        not slow.
        """
        if self.cell_timeout_s is not None:
            return self.cell_timeout_s
        return BUILD_ALLOWANCE_S + 10 * (self.time_budget_s + self.warmup_s)

    def _check_types(self) -> None:
        """TOML values arrive untyped: reject `seed = "x"` here rather than as an error row per cell."""
        expected: dict[str, tuple[type, ...]] = {
            "device": (str, type(None)),
            "size": (str,),
            "out": (str, type(None)),
            "time_budget_s": (int, float),
            "min_samples": (int,),
            "warmup_s": (int, float),
            "min_psnr_db": (int, float),
            "seed": (int,),
            "keep_artifacts": (bool,),
            "include_transfers": (bool,),
            "isolation": (str,),
            "cell_timeout_s": (int, float, type(None)),
            "threads": (int, type(None)),
            "repeats": (int,),
            "prompt_len": (int, type(None)),
            "new_tokens": (int, type(None)),
            "kv_cache": (str,),
            "min_token_match": (int, float),
            "steps": (int, type(None)),
            "guidance": (int, float),
            "sampler": (str,),
            "weights": (str, type(None)),
        }
        for name, types in expected.items():
            value = getattr(self, name)
            numeric = int in types or float in types
            if not isinstance(value, types) or (numeric and isinstance(value, bool)):
                wanted = " or ".join("none" if t is type(None) else t.__name__ for t in types)
                raise ConfigError(f"{name} must be {wanted}, got {value!r}")


def _unique(items: tuple[Any, ...]) -> tuple[Any, ...]:
    """Drop repeats, keeping the first: `fp32,fp32` would run the same cell twice."""
    return tuple(dict.fromkeys(items))


_TUPLE_FIELDS = {"models", "custom_models", "pipelines"}
_INT_TUPLE_FIELDS = {"batch_sizes"}


def _coerce(name: str, value: Any) -> Any:
    if name in _TUPLE_FIELDS:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
            raise ConfigError(f"{name} must be a list of strings or a comma-separated string")
        return _unique(tuple(i.strip() for i in items if i.strip()))
    if name in _INT_TUPLE_FIELDS:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or any(isinstance(i, (bool, float)) for i in items):
            raise ConfigError(f"{name} must be integers, got {value!r}")
        try:
            return _unique(tuple(int(i) for i in items))
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be integers, got {value!r}") from None
    return value


def load_toml(path: Path) -> dict[str, Any]:
    """Read a run file into RunConfig field names; its keys are the flag names, optionally under [run].

    ``time-budget = 5`` is ``--time-budget 5``; the field names themselves (``time_budget_s``) are
    accepted too, as run files written for earlier versions use them.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder, not a TOML file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not a text file (not UTF-8): is it the run file?") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}".splitlines()[0]) from None
    if "run" in data and isinstance(data["run"], dict):
        data = data["run"]
    fields_by_name = {f.name for f in fields(RunConfig)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        field = FLAG_FIELDS.get(key) or FLAG_FIELDS.get(key.replace("_", "-"))
        if field is None and key.replace("-", "_") in fields_by_name:
            field = key.replace("-", "_")
        if field is None:
            raise ConfigError(
                f"unknown key {key!r} in {path}{did_you_mean(key, list(FLAG_FIELDS))}; "
                f"keys are the flag names: {', '.join(FLAG_FIELDS)}"
            )
        values[field] = value
    return values


def build_config(file_values: dict[str, Any], overrides: dict[str, Any]) -> RunConfig:
    """Merge file values with CLI overrides (overrides win; None means "not given")."""
    valid = {f.name for f in fields(RunConfig)}
    unknown = sorted(set(file_values) - valid)
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(unknown)}; keys: {', '.join(FLAG_FIELDS)}")
    merged = {k: _coerce(k, v) for k, v in file_values.items()}
    merged.update({k: _coerce(k, v) for k, v in overrides.items() if v is not None})
    if merged.get("custom_models") and "models" not in merged:
        merged["models"] = ()  # your own model alone (--model, or `model` in a run file) runs just that model
    try:
        return RunConfig(**merged)
    except TypeError as exc:
        raise ConfigError(f"bad config value: {exc}") from None
