"""Where a cluster batch's models live.

Each model gets a home: a node that has it and can fit it. Models are placed in the order the
batch first needs them, each on the node with the fewest models so far (then one that already
has it loaded, then one where it fits beside them, then the first listed), so with as many nodes
as models every node keeps one model resident and tasks stream through it.
A home is moved only when its node is lost, refuses the model (memory), or is paused by heat
while another node could serve it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class NodeOffer:
    """What one node can do for a batch: the models it can serve, each with the footprint of
    its largest load for the batch, and the room its memory manager allows resident together;
    ``lacks``: why it cannot serve the others."""

    name: str
    budget: int
    policy: str
    serves: dict[str, int]
    lacks: dict[str, str] = field(default_factory=dict)
    holds: set[str] = field(default_factory=set)  # of those, the models already loaded there


@dataclass
class Placement:
    """Each model's home node, kept current as nodes are lost or refuse."""

    offers: dict[str, NodeOffer]
    homes: dict[str, str] = field(default_factory=dict)
    lost: set[str] = field(default_factory=set)
    refused: set[tuple[str, str]] = field(default_factory=set)  # (model, node)

    @classmethod
    def plan(cls, models: Iterable[str], offers: Sequence[NodeOffer]) -> Placement:
        """Place ``models`` (in order of first use) on ``offers``' nodes.

        >>> offers = [NodeOffer(n, 16, "one-at-a-time", {"p": 5, "c": 5, "e": 9}) for n in "ab"]
        >>> Placement.plan(["p", "c", "e"], offers).homes
        {'p': 'a', 'c': 'b', 'e': 'a'}
        >>> small = NodeOffer("s", 8, "one-at-a-time", {"p": 5, "c": 5})
        >>> Placement.plan(["e", "p"], [small, offers[0]]).homes
        {'e': 'a', 'p': 's'}
        >>> warm = NodeOffer("w", 16, "one-at-a-time", {"p": 5, "c": 5, "e": 9}, holds={"e"})
        >>> Placement.plan(["p", "c", "e"], [*offers, warm]).homes  # e is loaded on w already
        {'p': 'a', 'c': 'b', 'e': 'w'}
        """
        placement = cls({offer.name: offer for offer in offers})
        for model in models:
            home = placement._choose(model)
            if home is not None:
                placement.homes[model] = home
        return placement

    def unplaced(self, models: Iterable[str]) -> list[str]:
        return [model for model in models if model not in self.homes]

    def candidates(self, model: str) -> list[str]:
        """The nodes that could serve ``model`` now."""
        return [
            name
            for name, offer in self.offers.items()
            if model in offer.serves and name not in self.lost and (model, name) not in self.refused
        ]

    def on(self, node: str) -> list[str]:
        return [model for model, home in self.homes.items() if home == node]

    def lose(self, node: str) -> dict[str, str | None]:
        """``node`` is gone: each model it was home to moves (None: nowhere to go)."""
        self.lost.add(node)
        return {model: self.move(model) for model in self.on(node)}

    def refuse(self, model: str, node: str) -> str | None:
        """``node`` refused ``model`` (memory): it moves for good. The new home, or None."""
        self.refused.add((model, node))
        return self.move(model)

    def move(self, model: str, *, away_from: str | None = None) -> str | None:
        """A new home for ``model``, not ``away_from`` (a paused node) if another will do."""
        current = self.homes.pop(model, None)
        home = self._choose(model, frozenset({away_from or ""}))
        if home is None and away_from is not None and away_from in self.candidates(model):
            home = away_from
        if home is not None:
            self.homes[model] = home
        elif current is not None and current in self.candidates(model):
            self.homes[model] = current
        return self.homes.get(model)

    def _choose(self, model: str, avoid: frozenset[str] = frozenset()) -> str | None:
        choices = [name for name in self.candidates(model) if name not in avoid]
        if not choices:
            return None
        order = list(self.offers)

        def rank(name: str) -> tuple[int, bool, bool, int]:
            offer = self.offers[name]
            used = sum(offer.serves.get(m, 0) for m in self.on(name))
            crowded = used + offer.serves[model] > offer.budget  # would evict another model
            return (len(self.on(name)), model not in offer.holds, crowded, order.index(name))

        return min(choices, key=rank)


__all__ = ["NodeOffer", "Placement"]
