"""What one device class's cells ask of a Ray cluster, and which nodes can give it; pure, no Ray import.

The rules (README, "Running across machines with Ray"):

- a ``cuda`` cell asks for one GPU (``num_gpus=1``), so two GPU cells never share a
  card, and for ``--threads`` CPUs (one when not given: the host side of a GPU cell);
- a ``cpu`` cell asks for as many CPUs as the threads it runs with, so cells placed on
  one node never count the same cores twice (Ray's CPUs are counted, not pinned);
- ``--ray-resource NAME[=AMOUNT][@CLASS]`` and ``--node-label KEY=VALUE[@CLASS]`` pin a
  class's cells (every class's, without ``@CLASS``) to the nodes that have that custom
  resource or carry that label, e.g. ``accelerator_type:H100@cuda``, the resource Ray
  puts on its H100 nodes, or ``ray.io/accelerator-type=H100@cuda``, the label.

``fits`` says whether a node, as ``ray.nodes()`` describes it, could ever run such a cell:
the driver refuses a run no node can take, and gives up on queued cells whose last
fitting node is gone, instead of waiting on Ray forever.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.core.errors import ConfigError
from bench.harness.config import parse_device_class, parse_node_label, parse_ray_resource


@dataclass(frozen=True)
class Placement:
    """The resources and labels one device class's cells ask for (``options`` is what Ray is given)."""

    device: str  # cpu | cuda
    num_cpus: float
    num_gpus: float
    resources: tuple[tuple[str, float], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()

    def options(self) -> dict[str, Any]:
        """Keyword arguments for a remote function's ``.options``."""
        options: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        if self.resources:
            options["resources"] = dict(self.resources)
        if self.labels:
            options["label_selector"] = dict(self.labels)
        return options

    def fits(self, node: dict[str, Any]) -> bool:
        """Whether a live node has every resource asked for (in total, busy or not) and every label."""
        if not node.get("Alive", False):
            return False
        have = node.get("Resources") or {}
        asks = {"CPU": self.num_cpus, "GPU": self.num_gpus, **dict(self.resources)}
        if any(float(have.get(name, 0.0)) < amount for name, amount in asks.items() if amount > 0):
            return False
        labels = node.get("Labels") or {}
        return all(label_matches(value, labels.get(key)) for key, value in self.labels)

    def describe(self) -> str:
        """``cuda cells: 1 GPU and 1 CPU each, resource accelerator_type:H100``, for the console."""
        cpus = f"{self.num_cpus:g} CPU{'s' if self.num_cpus != 1 else ''}"
        asks = f"1 GPU and {cpus}" if self.num_gpus else cpus
        extra = [f"resource {name}={amount:g}" for name, amount in self.resources]
        extra += [f"label {key}={value}" for key, value in self.labels]
        return f"{self.device} cells: {asks} each" + (f", {', '.join(extra)}" if extra else "")


def label_matches(selector: str, value: str | None) -> bool:
    """A Ray label selector value against a node's label: ``v``, ``!v``, ``in(a,b)``, ``!in(a,b)``.

    A negated selector matches a node without the label, as Ray's does.
    """
    text = selector.strip()
    negated = text.startswith("!")
    if negated:
        text = text[1:].strip()
    if text.startswith("in(") and text.endswith(")"):
        wanted = {item.strip() for item in text[3:-1].split(",")}
    else:
        wanted = {text}
    hit = value is not None and value in wanted
    return not hit if negated else hit


def placement_for(
    device: str, threads: int | None, node_labels: tuple[str, ...] = (), ray_resources: tuple[str, ...] = ()
) -> Placement:
    """What a ``device`` class's cells ask for: its CPUs and GPU, and the specs for it or for every class."""
    resources: dict[str, float] = {}
    for text in ray_resources:
        name, amount, cls = parse_ray_resource(text)
        if cls in (None, device):
            resources[name] = amount
    labels: dict[str, str] = {}
    for text in node_labels:
        key, value, cls = parse_node_label(text)
        if cls in (None, device):
            labels[key] = value
    return Placement(
        device=device,
        num_cpus=float(threads) if threads is not None else 1.0,
        num_gpus=1.0 if device == "cuda" else 0.0,
        resources=tuple(sorted(resources.items())),
        labels=tuple(sorted(labels.items())),
    )


def device_classes(
    devices: tuple[str, ...] | None,
    nodes: list[dict[str, Any]],
    node_labels: tuple[str, ...],
    ray_resources: tuple[str, ...],
) -> tuple[str, ...]:
    """The classes a run covers: ``--devices``, else what a local run picks at cluster scale (cuda where any
    live node has a GPU, else cpu). A spec pinned to a class the run does not cover is refused."""
    if devices is not None:
        classes = tuple(dict.fromkeys(parse_device_class(d) for d in devices))
    else:
        gpus = any(n.get("Alive") and float((n.get("Resources") or {}).get("GPU", 0)) >= 1 for n in nodes)
        classes = ("cuda",) if gpus else ("cpu",)
    for flag, texts, parse in (
        ("--node-label", node_labels, parse_node_label),
        ("--ray-resource", ray_resources, parse_ray_resource),
    ):
        for text in texts:
            cls = parse(text)[2]
            if cls is not None and cls not in classes:
                raise ConfigError(
                    f"{flag} {text} names {cls}, which this run does not cover (device classes: {', '.join(classes)}; "
                    "add it to --devices)"
                )
    return classes


def unfit_reason(placement: Placement, nodes: list[dict[str, Any]]) -> str | None:
    """Why no live node can take the class's cells (None: one can), naming what each node has."""
    if any(placement.fits(node) for node in nodes):
        return None
    alive = [node for node in nodes if node.get("Alive", False)]
    shown = "; ".join(_node_text(node) for node in alive[:6]) + (
        f"; and {len(alive) - 6} more" if len(alive) > 6 else ""
    )
    return f"no live node of the cluster can take {placement.describe()} (nodes: {shown or 'none alive'})"


def _node_text(node: dict[str, Any]) -> str:
    have = node.get("Resources") or {}
    parts = [f"{float(have.get('CPU', 0)):g} CPU", f"{float(have.get('GPU', 0)):g} GPU"]
    parts += sorted(
        name
        for name in have
        if name not in ("CPU", "GPU", "memory", "object_store_memory") and not name.startswith("node:")
    )
    return f"{node.get('NodeManagerHostname', '?')} ({', '.join(parts)})"
