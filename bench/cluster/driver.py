"""This machine's side of a Ray run: connect, plan each device class on a node of it, stream the cells back.

``connect`` joins a cluster (``ADDRESS``, ``auto``, or ``local`` to start one here);
without Ray installed it is a one-line error naming the extra. ``plan_classes`` runs
one small task per device class on a node of that class (``bench.cluster.node.plan_class``):
the default pipelines and a CPU cell's thread count are the node's, as a local run's
are its machine's. ``RayExecutor`` is the executor seam (bench.harness.executor) for a
cluster: ``run_all`` submits every cell as a task (``placement``: one GPU, or --threads
CPUs, plus the pinned resources and labels) and yields each cell's record as its task
ends, so the runner writes rows in the order they finish, with the same writer.

Faults end one cell, never the run:

- a node lost or a Ray worker killed mid-cell: Ray retries the task ``--ray-retries``
  times (default 1); after that the cell's row is ``error`` with Ray's error in one line;
- a task that has not answered by its cell's timeout plus ``TASK_GRACE_S`` (for each
  attempt) after it started is cancelled, its row ``timeout``; a task that ignores the
  cancel is killed (``force``) and then given up on, so the driver never waits forever;
- cells still queued when no live node can take them any more wait ``NODE_WAIT_S`` for
  one to come back (a restarted node, an autoscaler), then become ``error`` rows;
- Ctrl-C (or SIGTERM) cancels every outstanding task (``close``); the finished rows are
  on disk already.

Every row says where it was measured: the node's own host, device name and ``hw_id``
(the worker on the node made the row), and ``ray node <id>`` in its notes, as two Ray
nodes can share a host name. Rows made here for a task that failed carry what is
known of its node.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from bench.cluster.placement import Placement, device_classes, placement_for, unfit_reason
from bench.core.errors import EnvironmentProblem, UsageError
from bench.core.text import one_line
from bench.harness.config import RunConfig
from bench.harness.executor import CellRecord, cell_identity
from bench.harness.isolation import ReportedCell
from bench.harness.isolation import _row_problem as row_problem  # the check a local worker's row gets
from bench.harness.plan import Cell
from bench.harness.result import CellOutcome, CellResult

#: seconds each attempt of a task may run past its cell's timeout: the Ray worker's start, the fork
#: server's (its imports: 2.3 s then 5.5 s to the first cell's reply, measured on a 2-core VM), the
#: worker's exit grace after it replied (bench.harness.isolation.EXIT_GRACE_S, 30 s) and the reply's trip
TASK_GRACE_S = 120.0
#: seconds a cancelled task has to end before it is killed, and again before it is given up on
CANCEL_GRACE_S = 30.0
#: seconds queued cells wait for a node that can take them after the last one left the cluster
NODE_WAIT_S = 120.0
#: seconds planning a device class may wait for a node of that class (it queues behind other jobs)
PLAN_TIMEOUT_S = 300.0
#: how often the driver looks for answers (and checks deadlines), and the nodes
POLL_S = 0.5
NODE_CHECK_S = 10.0
RAY_EXTRA = "pip install 'genbench[ray]'"


class RaySession:
    """A connection to a cluster; ``close`` disconnects (and stops a cluster ``local`` started)."""

    def __init__(self, ray: Any, address: str, owned: bool) -> None:
        self.ray = ray
        self.address = address
        self.owned = owned  # False when this process was connected already (a test's cluster)

    def nodes(self) -> list[dict[str, Any]]:
        return list(self.ray.nodes())

    def describe(self) -> dict[str, Any]:
        """What env.json records of the cluster: its address, Ray's version, each node's resources."""
        return {
            "address": self.address,
            "ray_version": self.ray.__version__,
            "nodes": [
                {
                    "node_id": n.get("NodeID"),
                    "host": n.get("NodeManagerHostname"),
                    "alive": bool(n.get("Alive")),
                    "resources": {
                        k: v
                        for k, v in (n.get("Resources") or {}).items()
                        if not k.startswith("node:") and k not in ("memory", "object_store_memory")
                    },
                    "labels": dict(n.get("Labels") or {}),
                }
                for n in self.nodes()
            ],
        }

    def close(self) -> None:
        if self.owned:
            with contextlib.suppress(Exception):
                self.ray.shutdown()


def connect(address: str) -> RaySession:
    """Join the cluster at ``address`` (``auto``: RAY_ADDRESS or the one running here; ``local``: start one)."""
    try:
        import ray
    except ImportError:
        raise UsageError(
            f"--ray needs Ray, which is not installed here: {RAY_EXTRA} (the ray extra)"
        ) from None
    if ray.is_initialized():
        return RaySession(ray, address, owned=False)
    options: dict[str, Any] = {"address": address, "log_to_driver": False}
    if address == "local":
        options["include_dashboard"] = False
    try:
        ray.init(**options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise EnvironmentProblem(f"cannot join the Ray cluster at {address}: {one_line(exc, 300)}") from None
    return RaySession(ray, address, owned=True)


@dataclass(frozen=True)
class ClassPlan:
    """One device class of the run: what its cells ask for, their config, and what its planning node said."""

    device: str
    placement: Placement
    config: RunConfig  # the run's, with a CPU cell's threads resolved
    pipelines: tuple[str, ...]
    left_out: tuple[str, ...]
    planned_on: str  # the host that planned it


def plan_classes(session: RaySession, config: RunConfig) -> list[ClassPlan]:
    """Each device class planned on a node of it (module docstring); UsageError when no node can take it."""
    from bench.cluster import node

    nodes = session.nodes()
    plans = []
    plan_task = session.ray.remote(node.plan_class)
    for device in device_classes(config.devices, nodes, config.node_labels, config.ray_resources):
        probe = placement_for(device, config.threads, config.node_labels, config.ray_resources)
        reason = unfit_reason(probe, nodes)
        if reason is not None:
            raise UsageError(reason)
        ref = plan_task.options(**probe.options(), max_retries=0).remote(config.to_json(), device)
        try:
            answer = session.ray.get(ref, timeout=PLAN_TIMEOUT_S)
        except session.ray.exceptions.GetTimeoutError:
            session.ray.cancel(ref, force=True)
            raise EnvironmentProblem(
                f"no {device} node of the cluster took the planning task within {PLAN_TIMEOUT_S:.0f} s: are they all busy?"
            ) from None
        except session.ray.exceptions.RayError as exc:
            raise UsageError(
                f"a {device} node could not plan the cells: {ray_error_line(exc)} (every node needs genbench installed)"
            ) from None
        threads = config.threads
        if threads is None and device == "cpu":
            threads = max(
                1, int(answer["cpus"])
            )  # a CPU cell takes the whole node, as a local run takes the machine
        plans.append(
            ClassPlan(
                device=device,
                placement=placement_for(device, threads, config.node_labels, config.ray_resources),
                config=replace(config, threads=threads),
                pipelines=tuple(answer["pipelines"]),
                left_out=tuple(answer["left_out"]),
                planned_on=str(answer["host"]),
            )
        )
    return plans


def ray_error_line(exc: BaseException) -> str:
    """Ray's error in one line: the remote exception itself for a task that raised, else Ray's own."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return one_line(cause, 300)
    return one_line(exc, 300)


@dataclass
class _Task:
    """One submitted cell: its generator of messages and what the driver knows of it."""

    cell: Cell
    plan: ClassPlan
    gen: Any  # ray.ObjectRefGenerator
    started: float | None = None  # time.monotonic() of its "started" message
    node_id: str | None = None
    host: str | None = None
    cancelled: float | None = None  # when the driver cancelled it (deadline, no node)
    forced: bool = False
    status: str = "error"  # the row a cancel gives
    why: str = ""


class RayExecutor:
    """Runs cells as Ray tasks (module docstring); ``plans`` maps each cell_id to its device class."""

    isolation = "process"

    def __init__(
        self,
        session: RaySession,
        run_id: str,
        plans: dict[int, ClassPlan],
        on_env: Callable[[dict[str, Any]], None] = lambda env: None,
        retries: int = 1,
    ) -> None:
        from bench.cluster import node

        self.session = session
        self.ray = session.ray
        self.run_id = run_id
        self.plans = plans
        self.on_env = on_env
        self.retries = retries
        self._cell_task = self.ray.remote(node.run_cell)
        self._cleanup_task = self.ray.remote(node.remove_node_folder)
        self._tasks: dict[int, _Task] = {}
        self._nodes_used: set[str] = set()
        self._seen: dict[tuple[str, str], dict[str, Any]] = {}  # (node id, device) -> its rows' identity
        self._unfit_since: dict[str, float] = {}
        self._next_node_check = 0.0

    def run(self, cell: Cell) -> CellRecord:
        """One cell, waiting for it (the executor protocol); a run uses ``run_all``."""
        return next(iter(self.run_all([cell])))

    def run_all(
        self, cells: list[Cell], on_start: Callable[[Cell], None] = lambda cell: None
    ) -> Iterator[CellRecord]:
        """Submit every cell, then yield each cell's record as its task ends."""
        for cell in cells:
            self._submit(cell)
        while self._tasks:
            yield from self._collect(on_start)
            yield from self._enforce_deadlines()
            self._check_nodes()

    def close(self) -> None:
        """Cancel what is still running (Ctrl-C, an error in the loop) and remove the nodes' run folders."""
        self._cancel_outstanding()
        self._remove_node_folders()

    # ------------------------------------------------------------------ submitting and collecting
    def _submit(self, cell: Cell) -> None:
        from reference_models import MODELS

        plan = self.plans[cell.cell_id]
        job = {
            "config": plan.config.to_json(),
            "device": plan.device,
            "run_id": self.run_id,
            "cell": {
                "cell_id": cell.cell_id,
                "model": cell.spec.name,
                "custom": cell.spec.name not in MODELS,  # a user's model is resolved by its path on the node
                "size": cell.size,
                "pipeline": cell.pipeline.text,
                "batch_size": cell.batch_size,
                "repeat": cell.repeat,
                "target_qps": cell.target_qps,
            },
        }
        gen = self._cell_task.options(
            **plan.placement.options(),
            max_retries=self.retries,
            retry_exceptions=False,  # a cell that fails is a row; only a lost worker or node is retried
            name=f"genbench cell {cell.cell_id}",
        ).remote(job)
        self._tasks[cell.cell_id] = _Task(cell, plan, gen)

    def _collect(self, on_start: Callable[[Cell], None]) -> Iterator[CellRecord]:
        by_gen = {id(t.gen): t for t in self._tasks.values()}
        gens = [t.gen for t in self._tasks.values()]
        ready, _ = self.ray.wait(gens, num_returns=1, timeout=POLL_S)
        if ready:
            ready, _ = self.ray.wait(gens, num_returns=len(gens), timeout=0)
        for gen in ready:
            task = by_gen[id(gen)]
            record = self._next_message(task, on_start)
            if record is not None:
                del self._tasks[task.cell.cell_id]
                yield record

    def _next_message(self, task: _Task, on_start: Callable[[Cell], None]) -> CellRecord | None:
        """The task's next message handled; the cell's record when it was the last."""
        try:
            # Not next(task.gen): at the end of a cancelled task's stream it waits, unbounded, for the task
            # to end, and a cell that ignores the cancel then held the driver forever (seen in a fresh-clone
            # CI run of the deadline test). Bounded, a nil ref means "not yet": the deadlines keep running.
            ref = task.gen._next_sync(timeout_s=POLL_S)
        except StopIteration:
            return self._fault(task, "error", "the cell's Ray task ended without a reply")
        if ref.is_nil():
            return None
        try:
            message = self.ray.get(ref)
        except self.ray.exceptions.TaskCancelledError:
            return self._fault(task, task.status, task.why or "the cell's Ray task was cancelled")
        except self.ray.exceptions.RayError as exc:
            return self._fault(task, "error", f"Ray: {ray_error_line(exc)}")
        if message["kind"] == "started":
            task.started, task.node_id, task.host = time.monotonic(), message["node_id"], message["host"]
            self._nodes_used.add(message["node_id"])
            on_start(task.cell)
            return None
        if message["kind"] == "failed":
            return self._fault(task, "error", f"the node could not run the cell: {message['error']}")
        return self._reply(task, message)

    def _reply(self, task: _Task, message: dict[str, Any]) -> CellRecord:
        from bench.harness.worker import decode_reply

        try:
            row, samples, phases, error, tables = decode_reply(message["reply"])
        except ValueError as exc:
            return self._fault(task, "error", f"the node's reply is malformed: {exc}")
        if row is None:
            return self._fault(task, "error", f"the node could not plan the cell: {error}")
        problem = row_problem(row)
        if problem is not None:
            return self._fault(task, "error", f"the node's row is malformed: {problem}")
        row["notes"] = _joined(row.get("notes"), self._where(task))
        key = (str(task.node_id), task.plan.device)
        if key not in self._seen:
            self._seen[key] = {
                c: row.get(c) for c in ("host", "device_name", "hw_id", "torch_version", "git_sha")
            }
            self.on_env(message["env"])
        return ReportedCell(row, tuple(samples), tuple(phases), tables)

    def _where(self, task: _Task) -> str:
        return f"ray node {task.node_id[:12]}" if task.node_id else ""

    def _fault(self, task: _Task, status: str, reason: str) -> CellResult:
        """The row of a cell whose task gave no row: what is known of its node, and why."""
        cell, config = task.cell, task.plan.config
        known = self._seen.get((str(task.node_id), task.plan.device), {})
        # what is not known stays empty (None): never this machine's host or hw_id
        identity = cell_identity(
            cell,
            run_id=self.run_id,
            host=task.host or known.get("host"),
            device=task.plan.device,
            device_name=known.get("device_name"),
            hw_id=known.get("hw_id"),
            scenario=config.scenario,
            threads=config.threads,  # None for a cuda cell without --threads
            isolation=self.isolation,
            torch_version=known.get("torch_version"),
            git_sha=known.get("git_sha"),
        )
        return CellResult(identity, CellOutcome(status, reason[:400], self._where(task) or None))

    # ------------------------------------------------------------------ deadlines, nodes, cancelling
    def allowed_s(self, plan: ClassPlan) -> float:
        """Seconds a task may run from its start: each attempt its cell's timeout plus TASK_GRACE_S."""
        return (1 + self.retries) * (plan.config.cell_timeout() + TASK_GRACE_S)

    def _enforce_deadlines(self) -> Iterator[CellRecord]:
        now = time.monotonic()
        for task in list(self._tasks.values()):
            if task.started is None:
                continue
            allowed = self.allowed_s(task.plan)
            if task.cancelled is None and now - task.started > allowed:
                why = (
                    f"cancelled by the driver: no reply {allowed:.0f} s after the task started (the cell's "
                    f"timeout of {task.plan.config.cell_timeout():.0f} s and {TASK_GRACE_S:.0f} s of grace, "
                    f"for each of {1 + self.retries} attempts)"
                )
                self._cancel(task, "timeout", why, now)
            elif task.cancelled is not None and not task.forced and now - task.cancelled > CANCEL_GRACE_S:
                self._force(task)
            elif task.forced and task.cancelled is not None and now - task.cancelled > 2 * CANCEL_GRACE_S:
                del self._tasks[task.cell.cell_id]
                yield self._fault(task, task.status, f"{task.why}; the task did not end when killed")

    def _check_nodes(self) -> None:
        """Queued cells no live node can take any more are cancelled after NODE_WAIT_S (module docstring);
        their rows come back through ``_collect``, as Ray reports the cancel."""
        now = time.monotonic()
        if now < self._next_node_check:
            return
        self._next_node_check = now + NODE_CHECK_S
        nodes = self.session.nodes()
        for task in list(self._tasks.values()):
            if task.started is not None or task.cancelled is not None:
                continue
            reason = unfit_reason(task.plan.placement, nodes)
            if reason is None:
                self._unfit_since.pop(task.plan.device, None)
                continue
            since = self._unfit_since.setdefault(task.plan.device, now)
            if now - since > NODE_WAIT_S:
                self._cancel(task, "error", f"{reason} for {NODE_WAIT_S:.0f} s", now)

    def _cancel(self, task: _Task, status: str, why: str, now: float) -> None:
        task.status, task.why, task.cancelled = status, why, now
        with contextlib.suppress(Exception):
            self.ray.cancel(task.gen, force=False)  # KeyboardInterrupt in the task: its worker is killed

    def _force(self, task: _Task) -> None:
        task.forced = True
        with contextlib.suppress(Exception):
            self.ray.cancel(task.gen, force=True)

    def _cancel_outstanding(self) -> None:
        """Cancel every task still out, wait up to CANCEL_GRACE_S for them to end, then kill the rest."""
        if not self._tasks:
            return
        now = time.monotonic()
        for task in self._tasks.values():
            self._cancel(task, "error", "the run was interrupted", now)
        deadline = now + CANCEL_GRACE_S
        left = list(self._tasks.values())
        while left and time.monotonic() < deadline:
            ready, _ = self.ray.wait([t.gen for t in left], num_returns=1, timeout=POLL_S)
            ready_ids = {id(gen) for gen in ready}
            left = [t for t in left if id(t.gen) not in ready_ids or not self._ended(t)]
        for task in left:
            self._force(task)
        self._tasks.clear()

    def _ended(self, task: _Task) -> bool:
        """Read a cancelled task's next message: whether the task is over (anything but "started")."""
        try:
            ref = task.gen._next_sync(timeout_s=POLL_S)  # bounded, as in _next_message: next() can wait forever
            if ref.is_nil():
                return False
            message = self.ray.get(ref)
        except Exception:  # StopIteration, TaskCancelledError, a lost worker: it is over either way
            return True
        return message.get("kind") != "started"

    def _remove_node_folders(self) -> None:
        """Each node's run folder (the shared references, logs) removed by a task pinned to that node."""
        if not self._nodes_used:
            return
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        refs = [
            self._cleanup_task.options(
                num_cpus=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
                max_retries=0,
            ).remote(self.run_id)
            for node_id in sorted(self._nodes_used)
        ]
        with contextlib.suppress(Exception):
            self.ray.wait(refs, num_returns=len(refs), timeout=CANCEL_GRACE_S)
        self._nodes_used.clear()


def _joined(*notes: Any) -> str | None:
    text = "; ".join(str(n) for n in notes if n)
    return text or None
