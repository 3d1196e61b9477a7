"""Model label values for metrics, bounded by the config: clients choose model names, and every distinct
name in a label would be a new set of time series that never goes away.

A requested model name is its own label value when an exact route names it, or when a wildcard route
matched it and the price table lists it as spelled; other wildcard-routed names count under the route's
pattern (``openai/*``), and a name no route matched under ``OTHER``. An upstream (served) model name is
its own value when the config fixes it (a route's, target's or fallback's), else the price table's own
name for it (its loose matching accepts any number of spellings: ``anthropic.claude-sonnet-4-5-...-v1:0``
counts as ``claude-sonnet-4-5``), else the route's label. The access log and traces keep the real names.
"""

from __future__ import annotations

from trigate.config import Config
from trigate.observability.cost import PriceTable
from trigate.routing import Router

OTHER = "_other"


class ModelLabels:
    def __init__(self, config: Config, prices: PriceTable) -> None:
        self._router = Router(config)
        self._prices = prices
        self._routes: set[str] = set()  # client-facing names the config fixes
        self._upstream: set[str] = set()  # upstream model names the config fixes
        for route in config.models:
            named = [*([route.name] if "*" not in route.name else []), *route.fallbacks]
            for name in named:
                found = self._router.resolve_route(name)
                if found is None:
                    continue
                self._routes.add(name)
                self._upstream.update(t.model for t in found.targets)

    def request(self, name: str | None) -> tuple[str, str]:
        """(label of the requested model, label of its route: the route's name or pattern, or OTHER)."""
        if not name:
            return "", OTHER
        if name in self._routes:
            return name, name
        found = self._router.resolve_route(name)
        if found is None:
            return OTHER, OTHER
        route = found.route.name
        return (name if self._prices.canonical(name) == name else route), route

    def served(self, name: str | None, provider_kind: str | None, route: str) -> str:
        """The label of an upstream model name; ``route`` is the request's route label (from ``request``)."""
        if not name:
            return ""
        if name in self._upstream:
            return name
        return self._prices.canonical(name, provider_kind) or route
