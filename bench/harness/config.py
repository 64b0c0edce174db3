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
    "scenario": "scenario",
    "target-qps": "target_qps",
    "duration": "duration_s",
    "max-batch": "max_batch",
    "max-queue-delay-ms": "max_queue_delay_ms",
    "slo-p99-ms": "slo_p99_ms",
    "find-peak": "find_peak",
    "soak": "soak_s",
    "metrics-port": "metrics_port",
    "ray": "ray",
    "devices": "devices",
    "node-label": "node_labels",
    "ray-resource": "ray_resources",
    "ray-retries": "ray_retries",
}
#: --scenario: single-stream (one call at a time: the matrix), offline (every item at once: the batch
#: size that maximizes items/s), server (Poisson arrivals served with dynamic batching)
SCENARIOS: tuple[str, ...] = ("single-stream", "offline", "server")
#: the batch sizes an offline run searches when --batch-sizes does not bound it
OFFLINE_BATCH_SIZES: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
#: the highest rate a run offers: one Python load generator issues about 20,000 requests/s (measured on a
#: 2-core Xeon with a no-op model); far above that a schedule would only fill memory with requests never issued
MAX_TARGET_QPS = 100_000.0
#: the most requests one cell's load may schedule: each is ~116 bytes of the worker's reply (requests.csv),
#: and the reply is capped at 256 MiB (bench.harness.isolation.MAX_REPLY_BYTES)
MAX_REQUESTS_PER_CELL = 2_000_000
#: the longest load, soak or probe a run accepts: a week, in seconds
MAX_DURATION_S = 7 * 24 * 3600.0
ISOLATIONS: tuple[str, ...] = ("process", "none")
#: reference_models.causal_lm.CACHE_KINDS and reference_models.samplers.SAMPLERS (a test holds them equal):
#: written out here so that checking a config imports no model code
KV_CACHE_KINDS: tuple[str, ...] = ("static", "dynamic")
SAMPLER_NAMES: tuple[str, ...] = ("ddim", "euler")
#: --devices under --ray: the kinds of device a cluster's cells run on; Ray assigns the GPU itself, so
#: a class is never cuda:N
DEVICE_CLASSES: tuple[str, ...] = ("cpu", "cuda")
#: --ray-resource NAME without an amount: a presence requirement, as Ray's accelerator_type option asks
DEFAULT_RESOURCE_AMOUNT = 0.001


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
class ServingSettings:
    """What a serving cell runs (bench.harness.serve): the scenario and its load, batching, SLO and soak."""

    scenario: str
    duration_s: float
    max_batch: int
    max_queue_delay_ms: float
    slo_p99_ms: float | None
    find_peak: bool
    slo_x: float | None
    soak_s: float | None
    metrics_port: int | None
    seed: int

    @property
    def serves(self) -> bool:
        """Whether a cell of this run is a serving cell (a server load or a soak), not a timed call."""
        return self.scenario == "server" or self.soak_s is not None


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
    # serving scenarios (bench.serving)
    scenario: str = "single-stream"
    target_qps: tuple[float, ...] | None = None  # server: one cell per offered rate
    duration_s: float = 30.0  # server: seconds each load is measured (after its warm-up)
    max_batch: int = 8  # server: the dynamic batcher's largest batch
    max_queue_delay_ms: float = (
        0.0  # server: how long the oldest request may wait for others (Triton's default)
    )
    slo_p99_ms: float | None = None  # server: the p99 latency target (goodput; --find-peak's criterion)
    slo_x: float | None = None  # server: the target as a multiple of the cell's warm batch-1 latency (`3x`)
    find_peak: bool = False  # server: search the highest rate whose p99 meets the SLO
    soak_s: float | None = None  # run the scenario this long, recording a time series once per second
    metrics_port: int | None = None  # serve live values as Prometheus metrics on this port
    # running across machines (bench.cluster): each cell a Ray task
    ray: str | None = None  # the cluster: ADDRESS, auto (RAY_ADDRESS or a running cluster), local (start one)
    devices: tuple[str, ...] | None = None  # device classes to cover, each with the full matrix (None: cuda
    # where the cluster has GPUs, else cpu)
    node_labels: tuple[str, ...] = ()  # KEY=VALUE[@CLASS]: a Ray label selector on the cells (of CLASS)
    ray_resources: tuple[str, ...] = ()  # NAME[=AMOUNT][@CLASS]: a Ray custom resource the cells ask for
    ray_retries: int = 1  # Ray retries of a cell whose task or node died (a cell that failed is a row)

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
        self._check_scenario()
        self._check_ray()
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

    def _check_scenario(self) -> None:
        """Every combination of the serving flags that cannot mean anything is refused here, in one line."""
        if self.scenario not in SCENARIOS:
            raise ConfigError(
                f"unknown --scenario {self.scenario!r}; choose from {', '.join(SCENARIOS)}"
                f"{did_you_mean(self.scenario, SCENARIOS)}"
            )
        server = self.scenario == "server"
        if self.target_qps is not None:
            if not server:
                raise ConfigError("--target-qps needs --scenario server")
            if not self.target_qps or any(not 0 < q < math.inf for q in self.target_qps):
                raise ConfigError(
                    f"--target-qps must be positive request rates, e.g. 2,4,8 (got {list(self.target_qps)})"
                )
            if max(self.target_qps) > MAX_TARGET_QPS:
                raise ConfigError(
                    f"--target-qps {max(self.target_qps):g} is beyond what the load generator can issue "
                    f"(at most {MAX_TARGET_QPS:g}; about 20,000 requests/s is its measured limit)"
                )
        if self.target_qps:
            length = self.soak_s if self.soak_s is not None else self.duration_s
            expected = max(self.target_qps) * length
            if expected > MAX_REQUESTS_PER_CELL:
                raise ConfigError(
                    f"--target-qps {max(self.target_qps):g} for {length:g} s is {expected:,.0f} requests, more than "
                    f"a cell records ({MAX_REQUESTS_PER_CELL:,}): shorten the load or lower the rate"
                )
        if not 0 < self.duration_s <= MAX_DURATION_S:
            raise ConfigError(
                f"--duration must be a positive number of seconds up to a week (got {self.duration_s})"
            )
        if not 1 <= self.max_batch <= MAX_COUNT:
            raise ConfigError(f"--max-batch must be from 1 to {MAX_COUNT} (got {self.max_batch})")
        if not 0 <= self.max_queue_delay_ms < math.inf:
            raise ConfigError(f"--max-queue-delay-ms must be >= 0 (got {self.max_queue_delay_ms})")
        if self.find_peak:
            if not server:
                raise ConfigError("--find-peak needs --scenario server")
            if self.slo_p99_ms is None and self.slo_x is None:
                raise ConfigError("--find-peak needs --slo-p99-ms: the p99 latency the peak must meet")
            if self.target_qps is not None:
                raise ConfigError("--find-peak searches the rate itself: leave out --target-qps")
            if self.soak_s is not None:
                raise ConfigError("--find-peak and --soak are separate runs: find the peak, then soak at it")
        if self.slo_x is not None:
            if not 0 < self.slo_x < math.inf:
                raise ConfigError(f"--slo-p99-ms {self.slo_x}x: the multiple must be positive")
            if self.slo_p99_ms is not None:
                raise ConfigError("give --slo-p99-ms as milliseconds or as a multiple (3x), not both")
            if not server:
                raise ConfigError("--slo-p99-ms needs --scenario server (with --target-qps or --find-peak)")
        if self.slo_p99_ms is not None:
            if not 0 < self.slo_p99_ms < math.inf:
                raise ConfigError(f"--slo-p99-ms must be a positive number of ms (got {self.slo_p99_ms})")
            if not server:
                raise ConfigError("--slo-p99-ms needs --scenario server (with --target-qps or --find-peak)")
        if server and not self.find_peak and self.target_qps is None:
            raise ConfigError("--scenario server needs --target-qps RATES or --find-peak with --slo-p99-ms")
        if self.soak_s is not None:
            if not 0 < self.soak_s <= MAX_DURATION_S:
                raise ConfigError(f"--soak must be a positive duration up to a week (got {self.soak_s} s)")
            if self.scenario == "offline":
                raise ConfigError("--soak runs the server or single-stream scenario, not offline")
        if self.metrics_port is not None:
            if not 1 <= self.metrics_port <= 65535:
                raise ConfigError(
                    f"--metrics-port must be a TCP port from 1 to 65535 (got {self.metrics_port})"
                )
            if self.find_peak:
                raise ConfigError(
                    "--metrics-port watches one long load: use it with --soak or --target-qps, not --find-peak"
                )
            if self.soak_s is None and not server:
                raise ConfigError(
                    "--metrics-port serves a server run's or a soak's live values: add --soak or --scenario server"
                )

    def _check_ray(self) -> None:
        """The cluster flags: only with --ray, and only with what a cell on another machine can do."""
        if self.ray is None:
            for flag, given in (
                ("--devices", self.devices is not None),
                ("--node-label", bool(self.node_labels)),
                ("--ray-resource", bool(self.ray_resources)),
                ("--ray-retries", self.ray_retries != 1),
            ):
                if given:
                    raise ConfigError(f"{flag} places cells on a Ray cluster: add --ray ADDRESS|auto|local")
            return
        if not self.ray.strip():
            raise ConfigError("--ray needs an address: host:port, ray://host:port, auto or local")
        if self.device is not None:
            raise ConfigError(
                "--device picks a device of this machine; under --ray name device classes with --devices "
                "(Ray assigns each cell its GPU)"
            )
        if self.isolation != "process":
            raise ConfigError(
                "--ray runs each cell in its own worker process on the node: drop --isolation none"
            )
        if self.scenario == "offline":
            raise ConfigError(
                "--scenario offline searches batch sizes one after another: run it without --ray"
            )
        if self.soak_s is not None or self.metrics_port is not None:
            raise ConfigError(
                "--soak and --metrics-port watch a cell live on this machine: run them without --ray"
            )
        if self.devices is not None:
            if not self.devices:
                raise ConfigError("--devices needs at least one device class: cpu, cuda")
            for name in self.devices:
                parse_device_class(name)
        if not 0 <= self.ray_retries <= MAX_COUNT:
            raise ConfigError(f"--ray-retries must be from 0 to {MAX_COUNT} (got {self.ray_retries})")
        for text in self.node_labels:
            parse_node_label(text)
        for text in self.ray_resources:
            parse_ray_resource(text)

    def load_seconds(self) -> float:
        """Wall seconds one cell's loads take at most (warm-up, load, grace; every probe of a search; the soak)."""
        from bench.serving.peak import MAX_PROBE_FACTOR
        from bench.serving.server import grace_of, warmup_of

        if self.soak_s is not None:
            return self.soak_s + warmup_of(self.soak_s) + grace_of(self.soak_s, 0.0)
        if self.scenario != "server":
            return 0.0
        one = self.duration_s + warmup_of(self.duration_s) + grace_of(self.duration_s, 0.0)
        if self.find_peak:
            from bench.serving.peak import DEFAULT_MAX_PROBES

            probe = MAX_PROBE_FACTOR * self.duration_s
            return DEFAULT_MAX_PROBES * (probe + warmup_of(probe) + grace_of(probe, 0.0))
        return one

    def serving_settings(self) -> ServingSettings:
        return ServingSettings(
            scenario=self.scenario,
            duration_s=float(self.duration_s),
            max_batch=self.max_batch,
            max_queue_delay_ms=float(self.max_queue_delay_ms),
            slo_p99_ms=None if self.slo_p99_ms is None else float(self.slo_p99_ms),
            slo_x=None if self.slo_x is None else float(self.slo_x),
            find_peak=self.find_peak,
            soak_s=None if self.soak_s is None else float(self.soak_s),
            metrics_port=self.metrics_port,
            seed=self.seed,
        )

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
        tuples = _TUPLE_FIELDS | _INT_TUPLE_FIELDS | _FLOAT_TUPLE_FIELDS | _LIST_FIELDS
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
        # a serving cell's loads have a known length: it is hung past 1.5x that (plus priming)
        return BUILD_ALLOWANCE_S + 10 * (self.time_budget_s + self.warmup_s) + 1.5 * self.load_seconds()

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
            "scenario": (str,),
            "duration_s": (int, float),
            "max_batch": (int,),
            "max_queue_delay_ms": (int, float),
            "slo_p99_ms": (int, float, type(None)),
            "slo_x": (int, float, type(None)),
            "find_peak": (bool,),
            "soak_s": (int, float, type(None)),
            "metrics_port": (int, type(None)),
            "ray": (str, type(None)),
            "ray_retries": (int,),
        }
        for name, types in expected.items():
            value = getattr(self, name)
            numeric = int in types or float in types
            if not isinstance(value, types) or (numeric and isinstance(value, bool)):
                wanted = " or ".join("none" if t is type(None) else t.__name__ for t in types)
                raise ConfigError(f"{name} must be {wanted}, got {value!r}")


def parse_device_class(text: str) -> str:
    """``cpu`` or ``cuda`` (any case); ConfigError in one line for anything else, ``cuda:N`` included."""
    name = text.strip().lower()
    if name not in DEVICE_CLASSES:
        hint = " (Ray assigns each cell its GPU: name the class, cuda)" if name.startswith("cuda:") else ""
        raise ConfigError(
            f"unknown device class {text!r} in --devices; choose from {', '.join(DEVICE_CLASSES)}{hint}"
            f"{did_you_mean(name, DEVICE_CLASSES) if not hint else ''}"
        )
    return name


def _device_suffix(text: str, flag: str) -> tuple[str, str | None]:
    """``SPEC@CLASS`` as (SPEC, CLASS); (SPEC, None) without a class: the spec applies to every class."""
    spec, at, cls = text.strip().rpartition("@")
    if not at:
        return text.strip(), None
    if not spec:
        raise ConfigError(f"{flag} {text!r} names a device class but nothing to ask for")
    return spec, parse_device_class(cls)


def parse_node_label(text: str) -> tuple[str, str, str | None]:
    """``--node-label KEY=VALUE[@CLASS]`` as (key, value, class); the value is a Ray label selector
    value (``H100``, ``!H100``, ``in(A100,H100)``), checked by Ray itself."""
    spec, cls = _device_suffix(text, "--node-label")
    key, eq, value = spec.partition("=")
    if not eq or not key.strip() or not value.strip():
        raise ConfigError(
            f"--node-label takes KEY=VALUE[@CLASS], e.g. ray.io/accelerator-type=H100@cuda (got {text!r})"
        )
    return key.strip(), value.strip(), cls


def parse_ray_resource(text: str) -> tuple[str, float, str | None]:
    """``--ray-resource NAME[=AMOUNT][@CLASS]`` as (name, amount, class).

    The amount defaults to 0.001 (what Ray's own ``accelerator_type`` option asks): the cell needs
    the resource to be on the node, and any number of cells may share it; give 1 to let each unit
    of it take one cell at a time.
    """
    spec, cls = _device_suffix(text, "--ray-resource")
    name, eq, amount_text = spec.partition("=")
    name = name.strip()
    if not name:
        raise ConfigError(
            f"--ray-resource takes NAME[=AMOUNT][@CLASS], e.g. accelerator_type:H100@cuda (got {text!r})"
        )
    if name in ("CPU", "GPU", "memory"):
        raise ConfigError(
            f"--ray-resource {name} is set by genbench (a CPU cell asks --threads CPUs, a cuda cell one GPU)"
        )
    if not eq:
        return name, DEFAULT_RESOURCE_AMOUNT, cls
    try:
        amount = float(amount_text)
    except ValueError:
        raise ConfigError(f"--ray-resource {text!r}: the amount must be a number") from None
    if not 0 < amount < math.inf:
        raise ConfigError(f"--ray-resource {text!r}: the amount must be a positive number")
    return name, amount, cls


def _unique(items: tuple[Any, ...]) -> tuple[Any, ...]:
    """Drop repeats, keeping the first: `fp32,fp32` would run the same cell twice."""
    return tuple(dict.fromkeys(items))


_TUPLE_FIELDS = {"models", "custom_models", "pipelines", "devices"}
#: repeatable flags whose items may hold commas (a label selector's in(A100,H100)): never split
_LIST_FIELDS = {"node_labels", "ray_resources"}
_INT_TUPLE_FIELDS = {"batch_sizes"}
_FLOAT_TUPLE_FIELDS = {"target_qps"}


def _coerce(name: str, value: Any) -> Any:
    if name in _LIST_FIELDS:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
            raise ConfigError(f"{name} must be a string or a list of strings")
        return _unique(tuple(i.strip() for i in items if i.strip()))
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
    if name in _FLOAT_TUPLE_FIELDS:
        items = value.split(",") if isinstance(value, str) else value
        if isinstance(items, (int, float)) and not isinstance(items, bool):
            items = [items]
        if not isinstance(items, (list, tuple)) or any(isinstance(i, bool) for i in items):
            raise ConfigError(f"{name} must be numbers, got {value!r}")
        try:
            return _unique(tuple(float(i) for i in items if str(i).strip()))
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be numbers, got {value!r}") from None
    if name == "soak_s" and isinstance(value, str):
        return parse_duration(value)
    if name == "slo_p99_ms" and isinstance(value, str) and not value.strip().lower().endswith("x"):
        try:
            return float(value)
        except ValueError:
            raise ConfigError(
                f"--slo-p99-ms takes milliseconds (250) or a multiple of the cell's batch-1 latency (3x), got {value!r}"
            ) from None
    return value


def parse_duration(text: str) -> float:
    """``600``, ``90s``, ``10m``, ``1.5h`` as seconds; ConfigError in one line otherwise."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    raw = text.strip().lower()
    scale = units.get(raw[-1:]) if raw else None
    number = raw[:-1] if scale is not None else raw
    try:
        seconds = float(number) * (scale or 1.0)
    except ValueError:
        raise ConfigError(f"--soak takes a duration like 600, 90s, 10m or 1h (got {text!r})") from None
    return seconds


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
    slo = merged.get("slo_p99_ms")
    if isinstance(slo, str) and slo.strip().lower().endswith("x"):  # `3x`: a multiple, resolved per cell
        merged["slo_x"] = _coerce("slo_p99_ms", slo.strip()[:-1])
        del merged["slo_p99_ms"]
    elif slo is not None:
        merged["slo_p99_ms"] = _coerce("slo_p99_ms", slo)
    if merged.get("scenario") == "offline":
        # the search's bounds when --batch-sizes does not set them; smallest first, as the search climbs
        merged["batch_sizes"] = tuple(sorted(merged.get("batch_sizes", OFFLINE_BATCH_SIZES)))
    if merged.get("scenario") == "server" and "batch_sizes" in merged:
        raise ConfigError(
            "--batch-sizes does not apply to --scenario server: its batches form up to --max-batch"
        )
    if merged.get("custom_models") and "models" not in merged:
        merged["models"] = ()  # your own model alone (--model, or `model` in a run file) runs just that model
    try:
        return RunConfig(**merged)
    except TypeError as exc:
        raise ConfigError(f"bad config value: {exc}") from None
