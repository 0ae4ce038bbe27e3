"""One node's ai-stack worker: the node's own settings (its config file and environment), its own
session — backend, memory manager, residency lease, thermal guard — making the model calls a
cluster batch hands it.

It runs on its node as a Ray actor (:mod:`ai_stack.cluster.driver` starts it); nothing here
imports Ray. It reads no files for the batch: what it is sent (messages already built, under the
driver's file-access policy, and redacted) is all a model sees.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from ai_stack.backends import ModelInfo, ModelSpec
from ai_stack.backends.base import LoadOptions
from ai_stack.cluster.placement import NodeOffer
from ai_stack.config import load_settings
from ai_stack.errors import AiStackError, MemoryBudgetError
from ai_stack.roles import RoleRunner, Served, ServedReply
from ai_stack.session import Session
from ai_stack.thermal.policy import HOT
from ai_stack.types import Event, Token


@dataclass(frozen=True, slots=True)
class NodeHello:
    """A worker's first word: where it runs and what it uses."""

    name: str
    host: str
    backend: str = ""
    backend_note: str = ""
    policy: str = ""
    budget: int = 0
    problem: str | None = None  # why this worker cannot serve (its settings, its backend)


@dataclass(slots=True)
class NodeReply:
    """What a call on a node gave: its events (tokens left out: the text comes whole), and the
    reply, or the error (``refused``: the memory manager would not load the model), or
    ``deferred`` when the node was too hot to start and the driver may send it elsewhere."""

    node: str
    events: list[Event] = field(default_factory=list)
    reply: ServedReply | None = None
    error: str | None = None
    hint: str | None = None
    refused: bool = False
    deferred: str | None = None


class NodeWorker:
    """The worker; every method is a remote call from the driver."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.problem: str | None = None
        try:
            self.session = Session.open(load_settings())
        except AiStackError as exc:
            self.problem = f"{exc.message} {exc.hint or ''}".strip()
            return
        self.runner = RoleRunner(self.session.manager, guard=self.session.guard)

    def hello(self) -> NodeHello:
        if self.problem is not None:
            return NodeHello(self.name, socket.gethostname(), problem=self.problem)
        manager = self.session.manager
        return NodeHello(
            self.name,
            socket.gethostname(),
            self.session.choose_backend(),
            self.session.backend_note,
            manager.policy,
            manager.residency_budget,
        )

    def offer(self, loads: dict[ModelSpec, LoadOptions]) -> NodeOffer:
        """Which of ``loads`` this node can serve, each with its footprint, and why not the
        others (not installed, backend down, over the budget)."""
        manager = self.session.manager
        serves: dict[str, int] = {}
        lacks: dict[str, str] = {}
        for spec, options in loads.items():
            try:
                serves[str(spec)] = manager.check_fits(spec, options).total
            except AiStackError as exc:
                lacks[str(spec)] = exc.message
        holds = set()
        for backend in {ModelSpec.parse(text).backend_name for text in serves}:
            try:
                resident = manager.backend(backend).resident()
            except AiStackError:
                continue
            holds |= {f"{backend}:{model.name}" for model in resident}
        return NodeOffer(
            self.name, manager.residency_budget, manager.policy, serves, lacks, holds & set(serves)
        )

    def describe(self, spec: ModelSpec) -> tuple[ModelInfo | None, str | None]:
        """The model's description, or why this node has none."""
        try:
            return self.session.manager.describe(spec), None
        except AiStackError as exc:
            return None, exc.message

    def list_models(self, backend: str) -> list[ModelInfo]:
        return self.session.manager.backend(backend).list_models()

    def serve(self, request: Served, *, floor: int = 0, may_defer: bool = False) -> NodeReply:
        """Make the call; ``floor``: the context its model is loaded with at least (the largest
        its waiting calls need); ``may_defer``: when the node is too hot, say so at once rather
        than pause (another node could serve)."""
        guard = self.session.guard
        if may_defer and guard is not None:
            guard.poll(force=True)
            if guard.level in HOT:
                return NodeReply(self.name, deferred=f"thermal level {guard.level}")
        if floor:
            self.session.manager.reserve_context(str(request.call.spec), floor)
        reply = NodeReply(self.name)
        calls = self.runner.serve(request)
        try:
            while True:
                event = next(calls)
                if not isinstance(event, Token):
                    reply.events.append(event)
        except StopIteration as done:
            reply.reply = done.value
        except AiStackError as exc:
            reply.error, reply.hint = exc.message, exc.hint
            reply.refused = isinstance(exc, MemoryBudgetError)
        return reply

    def release(self) -> list[Event]:
        """Unload what this worker loaded and let its leases go; its events."""
        if self.problem is not None:
            return []
        events = list(self.session.manager.release_all("the batch ended", "shutdown"))
        self.session.close()
        return events


__all__ = ["NodeHello", "NodeReply", "NodeWorker"]
