"""Model name -> upstream target.

Exact names win over patterns; patterns are tried in config order. A '*' matches any run of
characters; the upstream model is the route's ``model`` with '*' replaced by the matched text, or for
routes without ``model``: the requested name (``gpt-*``) or, when the pattern has a literal prefix
ending in '/', the text after it (``openai/*`` maps ``openai/gpt-4o`` to ``gpt-4o``).
"""

from __future__ import annotations

import re

from attrs import define

from trigate.config import Config, ModelRoute


@define(frozen=True)
class Target:
    provider: str
    model: str  # upstream model name
    weight: float = 1.0


@define(frozen=True)
class Resolved:
    """A client-facing model name resolved: its route (policies) and concrete targets."""

    name: str
    route: ModelRoute
    targets: list[Target]


@define(frozen=True)
class _Pattern:
    route: ModelRoute
    regex: re.Pattern[str]


class Router:
    def __init__(self, config: Config) -> None:
        self._exact: dict[str, ModelRoute] = {}
        self._patterns: list[_Pattern] = []
        for route in config.models:
            if "*" in route.name:
                rx = "^" + "(.*?)".join(re.escape(p) for p in route.name.split("*")) + "$"
                self._patterns.append(_Pattern(route, re.compile(rx, re.S)))
            else:
                self._exact.setdefault(route.name, route)

    def resolve(self, name: str) -> Target | None:
        """The primary target of ``name`` (first of its group)."""
        found = self.resolve_route(name)
        return found.targets[0] if found else None

    def resolve_route(self, name: str) -> Resolved | None:
        route = self._exact.get(name)
        captured: str | None = None
        if route is None:
            for pat in self._patterns:
                m = pat.regex.match(name)
                if m is not None:
                    route, captured = pat.route, (m.group(1) if m.groups() else "")
                    break
        if route is None:
            return None
        targets = [Target(spec.provider, self._upstream_model(route, spec.model, name, captured), spec.weight)
                   for spec in route.target_specs()]
        return Resolved(name, route, targets)

    @staticmethod
    def _upstream_model(route: ModelRoute, model: str | None, name: str, captured: str | None) -> str:
        if captured is None:
            return model or name
        if model:
            return model.replace("*", captured, 1)
        if route.name.endswith("/*") and route.name.count("*") == 1:
            return captured
        return name

    def listed_models(self) -> list[tuple[str, str]]:
        """(client-facing name, provider) for every non-wildcard route, in config order."""
        return [(r.name, r.provider) for r in self._exact.values()]

    def expanded_routes(self) -> list[ModelRoute]:
        """Wildcard routes whose provider's own model list should be shown."""
        return [p.route for p in self._patterns if p.route.expand]

    @staticmethod
    def client_name(route: ModelRoute, upstream_model: str) -> str | None:
        """The client-facing name under which ``route`` serves ``upstream_model`` (None if it doesn't)."""
        if route.model:
            if "*" not in route.model:
                return None
            prefix, _, suffix = route.model.partition("*")
            if not (upstream_model.startswith(prefix) and upstream_model.endswith(suffix)):
                return None
            captured = upstream_model[len(prefix):len(upstream_model) - len(suffix)]
            return route.name.replace("*", captured, 1)
        if route.name.endswith("/*") and route.name.count("*") == 1:
            return route.name[:-1] + upstream_model
        rx = "^" + ".*".join(re.escape(p) for p in route.name.split("*")) + "$"
        return upstream_model if re.match(rx, upstream_model) else None
