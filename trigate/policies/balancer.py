"""Which target of a model group to try first, and which targets are temporarily out.

Per target (provider + upstream model) the balancer counts requests in flight and consecutive
failures. A target failing ``eject_after`` times in a row is ejected for a cooldown that doubles on
repeated ejection; after it, the target gets traffic again and one success fully restores it.
Ejected targets are not dropped: they go to the end of the order, so a request still has somewhere
to go when every target is unhealthy.
"""

from __future__ import annotations

import random
import time

from attrs import define

from trigate.config import HealthConfig
from trigate.routing import Target


@define
class TargetState:
    inflight: int = 0
    failures: int = 0  # consecutive
    ejected_until: float = 0.0
    ejections: int = 0  # consecutive ejections, for the doubling cooldown

    def healthy(self, now: float) -> bool:
        return now >= self.ejected_until


class Balancer:
    def __init__(self, health: HealthConfig, rng: random.Random | None = None) -> None:
        self.health = health
        self._states: dict[tuple[str, str], TargetState] = {}
        self._rng = rng or random.Random()

    def state(self, target: Target) -> TargetState:
        key = (target.provider, target.model)
        st = self._states.get(key)
        if st is None:
            st = self._states[key] = TargetState()
        return st

    def order(self, targets: list[Target], strategy: str) -> list[Target]:
        """Attempt order: healthy targets by strategy, then ejected ones (soonest back first)."""
        now = time.monotonic()
        healthy = [t for t in targets if self.state(t).healthy(now)]
        ejected = sorted((t for t in targets if not self.state(t).healthy(now)),
                         key=lambda t: self.state(t).ejected_until)
        if strategy == "least_inflight":
            # ties keep config order, which is the intended priority
            healthy.sort(key=lambda t: (self.state(t).inflight / t.weight))
        elif strategy == "weighted" and len(healthy) > 1:
            first = self._rng.choices(healthy, weights=[t.weight for t in healthy])[0]
            rest = sorted((t for t in healthy if t is not first), key=lambda t: -t.weight)
            healthy = [first, *rest]
        return healthy + ejected

    def started(self, target: Target) -> None:
        self.state(target).inflight += 1

    def finished(self, target: Target) -> None:
        st = self.state(target)
        st.inflight = max(st.inflight - 1, 0)

    def success(self, target: Target) -> None:
        st = self.state(target)
        st.failures = 0
        st.ejections = 0
        st.ejected_until = 0.0

    def failure(self, target: Target) -> None:
        st = self.state(target)
        st.failures += 1
        if st.failures >= self.health.eject_after:
            cooldown = min(self.health.eject_seconds * (2 ** st.ejections), self.health.eject_max_seconds)
            st.ejected_until = time.monotonic() + cooldown
            st.ejections += 1
            st.failures = 0

    def is_ejected(self, target: Target) -> bool:
        return not self.state(target).healthy(time.monotonic())
