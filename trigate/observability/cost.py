"""Prices per model and the cost of one request, from the usage the upstream reported.

The shipped table (``trigate/data/prices.toml``) is USD per million tokens; the config's
``observability.prices`` entries override it. An upstream model name is matched after normalising the
ways providers decorate the same model: ``provider/`` prefixes, Bedrock ids
(``us.anthropic.claude-sonnet-4-5-20250929-v1:0``), Vertex ``@date`` suffixes and dated snapshots
(``gpt-4o-2024-08-06``). A model with no price costs nothing rather than a guess: ``cost_of`` returns
None, and the access log says so by leaving ``cost_usd`` out.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from importlib.resources import files
from typing import Any

from attrs import define

from trigate.translate.ir import Usage

PER_TOKEN = 1e-6  # prices are quoted per million tokens


@define(frozen=True)
class Price:
    """USD per million tokens. Missing rates fall back to the plain input/output rate."""

    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None
    audio_input: float | None = None
    audio_output: float | None = None

    def cost(self, u: Usage) -> float:
        # IR semantics: input_tokens includes cache reads and writes (and audio), output includes reasoning
        read, write = max(u.cache_read_tokens, 0), max(u.cache_write_tokens, 0)
        fresh = max(u.input_tokens - read - write, 0)
        audio_in = min(max(u.input_audio_tokens or 0, 0), fresh)
        audio_out = min(max(u.output_audio_tokens or 0, 0), max(u.output_tokens, 0))
        total = ((fresh - audio_in) * self.input
                 + read * (self.input if self.cached_input is None else self.cached_input)
                 + write * (self.input if self.cache_write is None else self.cache_write)
                 + audio_in * (self.input if self.audio_input is None else self.audio_input)
                 + (max(u.output_tokens, 0) - audio_out) * self.output
                 + audio_out * (self.output if self.audio_output is None else self.audio_output))
        return total * PER_TOKEN


def price_from(data: Mapping[str, Any]) -> Price:
    def rate(name: str) -> float | None:
        v = data.get(name)
        return None if v is None else float(v)

    return Price(input=float(data["input"]), output=float(data["output"]), cached_input=rate("cached_input"),
                 cache_write=rate("cache_write"), audio_input=rate("audio_input"), audio_output=rate("audio_output"))


def load_shipped() -> dict[str, Price]:
    """The packaged table: sections group models by vendor; keys are model names, optionally scoped
    to a provider kind (``groq/llama-3.3-70b-versatile``)."""
    raw = tomllib.loads(files("trigate").joinpath("data/prices.toml").read_text(encoding="utf-8"))
    out: dict[str, Price] = {}
    for section in raw.values():
        for name, entry in section.items():
            out[name.lower()] = price_from(entry)
    return out


# Bedrock cross-region inference profiles put a geography in front of the model id.
_REGION = re.compile(r"^(?:us|eu|apac|ap|jp|au|ca|us-gov|global)\.")
# Bedrock model ids name the vendor first: anthropic.claude-..., amazon.nova-...
_VENDOR = re.compile(r"^(?:anthropic|amazon|meta|mistral|cohere|deepseek|openai|ai21|writer|qwen)\.")
_BEDROCK_VERSION = re.compile(r"(?:-v\d+(?::\d+)?|:\d+)$")
_DATES = (
    re.compile(r"@\d{8}$"),  # Vertex: claude-sonnet-4-5@20250929
    re.compile(r"-\d{4}-\d{2}-\d{2}$"),  # OpenAI snapshots: gpt-4o-2024-08-06
    re.compile(r"-\d{8}$"),  # Anthropic: claude-sonnet-4-5-20250929
    re.compile(r"-\d{2}-\d{4}$"),  # Gemini previews: gemini-2.5-flash-lite-preview-09-2025
    re.compile(r"-\d{2}-\d{2}$"),  # Gemini previews: gemini-2.5-flash-preview-05-20
    re.compile(r"-\d{4}$"),  # Mistral and old OpenAI: mistral-medium-2508, gpt-4-0613
    re.compile(r"-\d{3}$"),  # Google versions: gemini-2.0-flash-001
)
_TAGS = re.compile(r"-(?:latest|preview|exp|experimental)$")


def candidates(model: str) -> Iterator[str]:
    """Ever more normalised spellings of ``model``, most specific first."""
    name = model.strip().lower()
    seen: set[str] = set()

    def fresh(n: str) -> bool:
        if n and n not in seen:
            seen.add(n)
            return True
        return False

    while True:
        if fresh(name):
            yield name
        if "/" not in name:
            break
        name = name.split("/", 1)[1]  # provider/ prefixes, however many
    stripped = _VENDOR.sub("", _REGION.sub("", name))
    stripped = _BEDROCK_VERSION.sub("", stripped)
    if fresh(stripped):
        yield stripped
    for _ in range(3):  # a date, then a tag, then maybe another date (gemini-...-preview-05-20)
        before = stripped
        for pattern in _DATES:
            stripped = pattern.sub("", stripped)
        if fresh(stripped):
            yield stripped
        stripped = _TAGS.sub("", stripped)
        if fresh(stripped):
            yield stripped
        if stripped == before:
            break
    if stripped.startswith("claude") and "." in stripped:  # claude-opus-4.5 -> claude-opus-4-5
        dashed = stripped.replace(".", "-")
        if fresh(dashed):
            yield dashed


class PriceTable:
    """Looks prices up by (provider kind, upstream model); lookups are memoised because the same few
    models come back on every request."""

    def __init__(self, shipped: Mapping[str, Price], overrides: Mapping[str, Price] | None = None) -> None:
        self._shipped = {k.lower(): v for k, v in shipped.items()}
        self._overrides = {k.lower(): v for k, v in (overrides or {}).items()}
        self._memo: dict[tuple[str | None, str], tuple[str, Price] | None] = {}

    def lookup(self, model: str, provider_kind: str | None = None) -> Price | None:
        found = self._entry(model, provider_kind)
        return found[1] if found is not None else None

    def canonical(self, model: str, provider_kind: str | None = None) -> str | None:
        """The table's own name for ``model`` (``claude-sonnet-4-5`` for a Bedrock id of it), None if it
        has no price: one of a bounded set of names, however the model was spelled."""
        found = self._entry(model, provider_kind)
        return found[0] if found is not None else None

    def _entry(self, model: str, provider_kind: str | None) -> tuple[str, Price] | None:
        key = (provider_kind, model)
        try:
            return self._memo[key]
        except KeyError:
            pass
        found = self._find(model, provider_kind)
        if len(self._memo) < 4096:  # client-chosen names must not grow it without bound
            self._memo[key] = found
        return found

    def _find(self, model: str, provider_kind: str | None) -> tuple[str, Price] | None:
        names = list(candidates(model))
        # overrides win over the shipped table at every level of normalisation
        for table in (self._overrides, self._shipped):
            for name in names:
                if provider_kind:
                    scoped = table.get(f"{provider_kind.lower()}/{name}")
                    if scoped is not None:
                        return name, scoped
                found = table.get(name)
                if found is not None:
                    return name, found
        return None

    def cost_of(self, usage: Usage | None, model: str | None, provider_kind: str | None = None) -> float | None:
        if usage is None or not model:
            return None
        price = self.lookup(model, provider_kind)
        return None if price is None else price.cost(usage)
