"""The driver's side of a cluster batch: Ray, the node workers, and the scheduler that hands each
model call to the node its model lives on.

The driver keeps everything a local batch keeps — the pipelines, the journal in the history, the
output directory, ``summary.json`` — so the files are the same and ``--resume`` works. Only the
model calls cross the network: each is built here (files read under the file-access policy),
redacted, and sent to one node's :class:`~ai_stack.cluster.worker.NodeWorker`; the node's events
come back with the reply and are journaled as if the call had been made here.

Nodes are Ray's: one worker per live node, pinned to it; or, where nodes advertise a custom
resource ``ai-stack:NAME`` (``ray start --resources '{"ai-stack:mini": 1}'``), one worker per
such resource — several on one machine with several servers, or in tests.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ai_stack.backends import ModelInfo, ModelSpec
from ai_stack.backends.base import BackendHealth, ChatOptions, ChatStream, LoadOptions, Message
from ai_stack.batch import BatchRunner, TaskRun, Waiting, choose_model, task_steps
from ai_stack.cluster.placement import Placement
from ai_stack.cluster.worker import NodeHello, NodeReply, NodeWorker
from ai_stack.config import ClusterSettings, Settings
from ai_stack.controller import smallest_loads
from ai_stack.errors import ClusterError, NodeError
from ai_stack.machine import Machine
from ai_stack.memory import MemoryManager
from ai_stack.modes import phase_rank
from ai_stack.redaction import redact
from ai_stack.roles import RoleRunner, Served, ServedReply
from ai_stack.session import Session
from ai_stack.types import CallHandedOff, Event, ModelLoaded, ModelUnloaded

SLOT_PREFIX = "ai-stack:"
NAMESPACE = "ai-stack"


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ClusterError(
            "Batches on a cluster need Ray, which is not installed.",
            hint="pip install 'ai-stack[cluster]' (docs/cluster.md)",
        ) from None
    return ray


@dataclass
class Node:
    """One worker as the driver tracks it."""

    name: str
    actor: Any
    hello: NodeHello
    resident: list[str] = field(default_factory=list)  # as its events said
    loads: int = 0
    calls: int = 0
    lost: bool = False
    busy: bool = False

    def observe(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, ModelLoaded):
                self.loads += 1
                self.resident.append(event.model)
            elif isinstance(event, ModelUnloaded) and event.model in self.resident:
                self.resident.remove(event.model)


class Cluster:
    """A connection to a Ray cluster, with one ai-stack worker per node; close it to unload
    what the workers loaded."""

    def __init__(self, address: str, nodes: list[Node], left_out: list[str]) -> None:
        self.address = address
        self.nodes = nodes
        self.left_out = left_out  # one line per node that cannot serve, naming it
        self.ray = _ray()

    @classmethod
    def connect(cls, address: str, settings: ClusterSettings) -> Cluster:
        """Join the cluster at ``address`` (``auto``: the one ``ray start`` runs here) and
        start a worker on each node; a worker that does not say hello in time is left out."""
        ray = _ray()
        if not ray.is_initialized():
            address = _reachable(address, settings.connect_timeout_s)
            try:
                ray.init(
                    address=address,
                    namespace=NAMESPACE,
                    log_to_driver=False,
                    logging_level=logging.WARNING,
                )
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ClusterError(
                    f"Cannot join the Ray cluster at {address}: {exc}",
                    hint="Start one with `ray start --head` (docs/cluster.md).",
                ) from None
        remote = ray.remote(num_cpus=0, max_restarts=0, max_task_retries=0)(NodeWorker)
        batch = uuid.uuid4().hex[:8]
        started = {}
        for name, placement in _slots(ray).items():
            env = settings.slot(name).env
            started[name] = remote.options(
                name=f"{name}/{batch}",
                namespace=NAMESPACE,
                runtime_env={"env_vars": env} if env else None,
                **placement,
            ).remote(name)
        if not started:
            raise ClusterError(f"The Ray cluster at {address} has no live node.")
        greetings = {name: actor.hello.remote() for name, actor in started.items()}
        deadline = time.monotonic() + settings.start_timeout_s
        nodes, left_out = [], []
        for name, ref in greetings.items():
            try:
                hello = ray.get(ref, timeout=max(deadline - time.monotonic(), 0.1))
            except ray.exceptions.GetTimeoutError:
                waited = settings.start_timeout_s
                left_out.append(f"{name}: its worker did not start in {waited:.0f} s")
                ray.kill(started[name])
                continue
            except ray.exceptions.RayError as exc:
                left_out.append(f"{name}: its worker failed to start ({_first_line(exc)})")
                continue
            if hello.problem is not None:
                left_out.append(f"{name} ({hello.host}): {hello.problem}")
                ray.kill(started[name])
                continue
            nodes.append(Node(name, started[name], hello))
        if not nodes:
            raise ClusterError(
                f"No node of the Ray cluster at {address} can serve: " + "; ".join(left_out)
            )
        return cls(address, nodes, left_out)

    @property
    def live(self) -> list[Node]:
        return [node for node in self.nodes if not node.lost]

    @property
    def backend(self) -> str:
        """The backend for model specs without a prefix: the one most nodes chose."""
        choices = [node.hello.backend for node in self.live]
        return max(dict.fromkeys(choices), key=choices.count)

    @property
    def note(self) -> str:
        names = ", ".join(f"{n.name} ({n.hello.backend})" for n in self.live)
        return f"Ray cluster {self.address}: {len(self.live)} node(s): {names}"

    def ask(self, method: str, *args: Any) -> Iterator[tuple[Node, Any]]:
        """Each live node's answer to ``method`` (a node that fails to answer is skipped)."""
        refs = [(node, getattr(node.actor, method).remote(*args)) for node in self.live]
        for node, ref in refs:
            try:
                yield node, self.ray.get(ref)
            except self.ray.exceptions.RayError:
                continue

    def session(self, settings: Settings) -> Session:
        """The driver's session: its memory manager sees the models through the nodes (sizes,
        descriptions) and never loads one; the nodes' managers do."""
        budget = max(node.hello.budget for node in self.live)
        manager = MemoryManager(
            lambda name: NodeBackend(name, self),
            policy=settings.memory.policy,
            budget_bytes=budget,
            gpu_limit_bytes=budget,
            machine=Machine.detect(),
            kv_cache_type=settings.memory.kv_cache_type,
        )
        return Session(settings, manager, None, backend=self.backend, backend_note=self.note)

    def close(self, timeout_s: float = 60.0) -> list[Event]:
        """Each node unloads what it loaded for this batch (after the call it is making, if
        any); then the workers stop. The unload events."""
        events: list[Event] = []
        refs = [node.actor.release.remote() for node in self.live]
        deadline = time.monotonic() + timeout_s
        for ref in refs:
            with contextlib.suppress(self.ray.exceptions.RayError):
                events += self.ray.get(ref, timeout=max(deadline - time.monotonic(), 0.1))
        for node in self.nodes:
            self.ray.kill(node.actor)
        return events


def _reachable(address: str, timeout_s: float = 5.0) -> str:
    """The address to join, once something there answers as Ray's head does (a gRPC server);
    ``auto`` becomes the address of the cluster ``ray start`` runs here. Ray itself retries an
    address for minutes, whether nothing listens there, a listener never answers, or ``auto``
    reads a stale record of a cluster that has stopped.

    >>> _reachable("local")
    'local'
    >>> _reachable("127.0.0.1:9")
    Traceback (most recent call last):
    ...
    ai_stack.errors.ClusterError: Nothing answers at 127.0.0.1:9 ...
    """
    shown = address
    if address == "auto":
        address, shown = _started_here()
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return address  # local, or auto with no record: Ray says so at once
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s) as link:
            link.settimeout(timeout_s)
            link.sendall(HTTP2_PREFACE)
            answer = link.recv(9)
    except OSError as exc:
        raise ClusterError(
            f"Nothing answers at {shown} ({_reason(exc, timeout_s)}): no Ray cluster there.",
            hint="Start one with `ray start --head`, or check the address (docs/cluster.md).",
        ) from None
    if len(answer) < 4 or answer[3] != HTTP2_SETTINGS:
        raise ClusterError(
            f"What answers at {shown} is not a Ray cluster (no gRPC reply).",
            hint="Check the address: a Ray head listens on port 6379 (docs/cluster.md).",
        )
    return address


# An HTTP/2 client's first bytes, and an empty SETTINGS frame: a gRPC server (Ray's GCS, its
# client server) answers with a SETTINGS frame of its own.
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
HTTP2_SETTINGS = 4


def _reason(error: OSError, timeout_s: float) -> str:
    if isinstance(error, TimeoutError):
        return f"no answer in {timeout_s:g} s"
    return error.strerror or str(error)


def _started_here() -> tuple[str, str]:
    """What ``auto`` means to Ray: ``$RAY_ADDRESS``, else the address ``ray start`` recorded
    in Ray's temporary directory (``$RAY_TMPDIR``, on Linux ``$TMPDIR``, else /tmp; ``ray/
    ray_current_cluster``), which stays behind when the cluster stops without ``ray stop``.
    The address, and how to name it in a message."""
    named = os.environ.get("RAY_ADDRESS", "").strip()
    if named and named not in ("auto", "local"):
        return named, f"{named} ($RAY_ADDRESS)"
    linux_tmp = os.environ.get("TMPDIR") if sys.platform.startswith("linux") else None
    temporary = os.environ.get("RAY_TMPDIR") or linux_tmp or "/tmp"
    record = Path(temporary) / "ray" / "ray_current_cluster"
    try:
        recorded = record.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return "auto", "auto"
    return recorded or "auto", f"{recorded} (recorded in {record} by `ray start`)"


def _slots(ray: Any) -> dict[str, dict[str, Any]]:
    """Each worker's name and the Ray options that pin it to its node."""
    named = sorted(r for r in ray.cluster_resources() if r.startswith(SLOT_PREFIX))
    if named:
        return {r.removeprefix(SLOT_PREFIX): {"resources": {r: 0.001}} for r in named}
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    slots: dict[str, dict[str, Any]] = {}
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        name = node.get("NodeManagerHostname") or node["NodeManagerAddress"]
        if name in slots:
            name = f"{name}-{node['NodeManagerAddress']}"
        strategy = NodeAffinitySchedulingStrategy(node_id=node["NodeID"], soft=False)
        slots[name] = {"scheduling_strategy": strategy}
    return slots


def _first_line(error: BaseException) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(error).__name__


class NodeBackend:
    """A backend as the driver sees it: descriptions and listings from a node that has them.
    Calls are never made through it — they are handed to the nodes."""

    local = False

    def __init__(self, name: str, cluster: Cluster) -> None:
        self.name = name
        self.cluster = cluster

    def health(self) -> BackendHealth:
        return BackendHealth(self.name, bool(self.cluster.live), self.cluster.note)

    def list_models(self) -> list[ModelInfo]:
        for _, models in self.cluster.ask("list_models", self.name):
            return list(models)
        return []

    def describe(self, model: str) -> ModelInfo:
        problems = []
        for node, (info, problem) in self.cluster.ask("describe", ModelSpec(self.name, model)):
            if info is not None:
                return info
            problems.append(f"{node.name}: {problem}")
        raise ClusterError(f"No node has {self.name}:{model}: " + "; ".join(problems))

    def load(self, model: str, options: LoadOptions) -> None:
        raise RuntimeError("a cluster's models are loaded by its nodes")

    def unload(self, model: str) -> None:
        raise RuntimeError("a cluster's models are unloaded by its nodes")

    def resident(self) -> list[Any]:
        return []

    def chat(
        self,
        model: str,
        messages: list[Message],
        *,
        options: ChatOptions,
        schema: dict[str, Any] | None = None,
    ) -> ChatStream:
        raise RuntimeError("a cluster's calls are made by its nodes")

    def close(self) -> None:
        pass


class HandingOff(RoleRunner):
    """Makes no call itself: hands each one to the batch's scheduler, which has a node make it,
    then replays what the node reported."""

    def serve(self, request: Served) -> Generator[Event, None, ServedReply]:
        handoff = CallHandedOff(request)
        yield handoff
        reply: NodeReply = handoff.reply
        yield from reply.events
        if reply.error is not None:
            raise NodeError(reply.node, reply.error, hint=reply.hint, refused=reply.refused)
        served: ServedReply | None = reply.reply
        assert served is not None
        return served


class ClusterBatchRunner(BatchRunner):
    """A batch whose calls are made on a cluster's nodes, each model on its home node
    (:class:`~ai_stack.cluster.placement.Placement`); the journal, files and resume are the
    local batch's."""

    runner_type = HandingOff

    def __init__(self, *args: Any, cluster: Cluster, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cluster = cluster
        self.placement: Placement | None = None
        self._hot: dict[str, set[str]] = {}  # per task: the nodes too hot for its call

    # -- placement ---------------------------------------------------------------------------

    def preflight(self) -> None:
        """Ask every node what it can serve and place each model; fail if one has no node."""
        loads: dict[ModelSpec, LoadOptions] = {}
        first_use: list[str] = []
        for task in self.workflow.tasks:
            specs = self.specs[task.id]
            for spec, options in smallest_loads(task.settings, specs, self.load_options).items():
                if spec not in loads or options.num_ctx > loads[spec].num_ctx:
                    loads[spec] = options
            first_use += [model for _, _, model in task_steps(specs, task.settings)]
        models = list(dict.fromkeys(first_use))
        offers = [offer for _, offer in self.cluster.ask("offer", loads)]
        self.placement = Placement.plan(models, offers)
        missing = self.placement.unplaced(models)
        if missing:
            reasons = "; ".join(
                f"{offer.name}: {offer.lacks.get(missing[0], 'no answer')}" for offer in offers
            )
            raise ClusterError(f"No node can serve {missing[0]}: {reasons}")
        for offer in offers:
            if not self.placement.on(offer.name) and offer.lacks:
                self.cluster.left_out.append(
                    f"{offer.name}: " + "; ".join(f"{m}: {why}" for m, why in offer.lacks.items())
                )

    def _where(self) -> tuple[dict[str, str] | None, dict[str, tuple[str, int]] | None]:
        assert self.placement is not None, "preflight() places the models"
        offers = self.placement.offers
        nodes = {name: (offer.policy, offer.budget) for name, offer in offers.items()}
        return dict(self.placement.homes), nodes

    # -- the schedule ------------------------------------------------------------------------

    def _schedule(self) -> bool:
        """Hand calls to nodes, one at a time per node, each node serving its resident model
        first and then the earliest phase waiting for it; True if it stopped early."""
        if self.placement is None:
            self.preflight()
        flights: dict[Any, tuple[TaskRun, Node]] = {}
        stopping = False
        while True:
            self._start_ready()
            for run in self.runs:
                while run.waiting is not None:  # on to the hand-off: nothing is called here
                    self._advance(run)
            stopping = stopping or self.should_stop()
            if not stopping:
                self._dispatch(flights)
            if not flights:
                return stopping and any(r.handoff is not None for r in self.runs)
            ready, _ = self.cluster.ray.wait(list(flights), num_returns=1)
            for ref in ready:
                run, node = flights.pop(ref)
                self._landed(run, node, ref)

    def _dispatch(self, flights: dict[Any, tuple[TaskRun, Node]]) -> None:
        assert self.placement is not None
        flying = {id(run) for run, _ in flights.values()}
        pending = [r for r in self.runs if r.handoff is not None and id(r) not in flying]
        for run in pending:
            if self.placement.homes.get(_model(run)) is None:  # every node for it is gone
                self._fail_call(run, f"no node is left to serve {_model(run)}")
        pending = [r for r in pending if r.handoff is not None]
        for node in self.cluster.live:
            mine = [r for r in pending if self.placement.homes.get(_model(r)) == node.name]
            if node.busy or not mine:
                continue
            waiting = [Waiting(r.planned.id, r.order, _rank(r), _model(r)) for r in mine]
            model = choose_model(waiting, set(node.resident))
            group = [r for r in mine if _model(r) == model]
            run = min(group, key=lambda r: (_rank(r), r.order))
            request = _redacted(_request(run))
            floor = max(_request(r).load.num_ctx for r in group)
            # a hot node may send the call on while another node, not hot for it, could take it
            hot = self._hot.get(run.planned.id, set()) | {node.name}
            may_defer = bool(set(self.placement.candidates(model)) - hot)
            ref = node.actor.serve.remote(request, floor=floor, may_defer=may_defer)
            node.busy = True
            flights[ref] = (run, node)

    def _landed(self, run: TaskRun, node: Node, ref: Any) -> None:
        """A node answered (or died): advance the task, or send its call elsewhere."""
        assert self.placement is not None and run.handoff is not None
        node.busy = False
        model = _model(run)
        try:
            reply: NodeReply = self.cluster.ray.get(ref)
        except self.cluster.ray.exceptions.RayError as exc:
            node.lost = True
            moved = self.placement.lose(node.name)
            where = ", ".join(f"{m} to {home or 'no node'}" for m, home in moved.items())
            self.on_note(
                f"Node {node.name} was lost ({_first_line(exc)}); its call runs again"
                + (f" elsewhere: {where}" if where else "")
            )
            return
        node.observe(reply.events)
        if reply.deferred is not None:
            self._hot.setdefault(run.planned.id, set()).add(node.name)
            home = self.placement.move(model, away_from=node.name)
            if home != node.name:
                self.on_note(f"Node {node.name}: {reply.deferred}; {model} moves to {home}")
            return
        if reply.refused:
            home = self.placement.refuse(model, node.name)
            if home is not None:
                self.on_note(f"Node {node.name} refused {model} ({reply.error}); moved to {home}")
                return
        node.calls += 1
        self._hot.pop(run.planned.id, None)
        run.handoff.reply = reply
        self._advance(run)

    def _fail_call(self, run: TaskRun, reason: str) -> None:
        assert run.handoff is not None
        run.handoff.reply = NodeReply("cluster", error=reason)
        self._advance(run)

    def _nodes(self) -> list[dict[str, Any]] | None:
        homes = self.placement.homes if self.placement is not None else {}
        return [
            {
                "name": node.name,
                "host": node.hello.host,
                "backend": node.hello.backend,
                "models": [m for m, home in homes.items() if home == node.name],
                "loads": node.loads,
                "calls": node.calls,
                "lost": node.lost,
            }
            for node in self.cluster.nodes
        ]


def _request(run: TaskRun) -> Served:
    assert run.handoff is not None
    request: Served = run.handoff.request
    return request


def _model(run: TaskRun) -> str:
    return str(_request(run).call.spec)


def _rank(run: TaskRun) -> int:
    call = _request(run).call
    return phase_rank(call.phase, call.round)


def _redacted(request: Served) -> Served:
    """What leaves the driver: the messages with credentials redacted (whole: a model's prompt
    is not a stored copy, so it is not cut to the stored bound)."""
    messages: list[Message] = [
        {**message, "content": redact(message["content"], limit=None) or ""}
        for message in request.messages
    ]
    return replace(request, messages=messages)


__all__ = ["Cluster", "ClusterBatchRunner", "HandingOff", "Node", "NodeBackend"]
