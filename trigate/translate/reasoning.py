"""Reasoning-effort <-> thinking-budget mapping and default output limits, shared by the codecs.

OpenAI formats speak in efforts (``minimal``/``low``/``medium``/``high``/...), Anthropic and Gemini in token
budgets. Every codec that converts one into the other uses these tables so a request keeps the same
meaning whichever pair of formats it crosses.
"""

from __future__ import annotations

from trigate.translate import ir

# Anthropic rejects a thinking budget below this.
MIN_THINKING_BUDGET = 1024

# Effort -> thinking budget. low/medium/high follow the middle of protocols.md §11.7 ("low≈1024-2048,
# medium≈8192, high≈16k-24k"); minimal is the smallest budget Anthropic accepts, and xhigh/max extend the
# ladder so every effort of every vocabulary maps to a distinct, increasing budget.
EFFORT_BUDGETS: dict[str, int] = {
    "minimal": 1024,
    "low": 2048,
    "medium": 8192,
    "high": 16384,
    "xhigh": 24576,
    "max": 32000,
}

DEFAULT_EFFORT = "medium"

# Output limit used when a request names none and the model is not in the table below. Small enough for
# any Anthropic-compatible backend to accept (protocols.md §11.8).
FALLBACK_MAX_TOKENS = 4096

# Longest matching prefix wins, so a family entry ("claude-opus-4") is overridden by a more specific one
# ("claude-opus-4-5"). Values are the models' documented maximum output, because a client of a format
# without a required limit (Chat, Responses) expects the model's own ceiling, not an arbitrary cut.
_MAX_TOKENS_BY_PREFIX: tuple[tuple[str, int], ...] = (
    ("claude-3-haiku", 4096),
    ("claude-3-opus", 4096),
    ("claude-3-sonnet", 4096),
    ("claude-3-5", 8192),
    ("claude-3-7-sonnet", 64000),
    ("claude-sonnet-4", 64000),
    ("claude-haiku-4", 64000),
    ("claude-opus-4", 32000),
    ("claude-opus-4-5", 64000),
    ("claude-opus-4-6", 128000),
)
_SORTED_PREFIXES = sorted(_MAX_TOKENS_BY_PREFIX, key=lambda kv: len(kv[0]), reverse=True)


def default_max_tokens(model: str) -> int:
    """The output limit to send when the request carries none.

    Accepts provider-decorated ids too (``anthropic.claude-sonnet-4-5-20250929-v1:0`` on Bedrock,
    ``claude-sonnet-4-5@20250929`` on Vertex) by matching from the ``claude-`` part.
    """
    name = model.lower()
    at = name.find("claude-")
    if at > 0:
        name = name[at:]
    for prefix, limit in _SORTED_PREFIXES:
        if name.startswith(prefix):
            return limit
    return FALLBACK_MAX_TOKENS


def budget_for_effort(effort: str | None) -> int:
    """Thinking budget for an effort; unknown or absent efforts get the medium budget."""
    if effort is None:
        return EFFORT_BUDGETS[DEFAULT_EFFORT]
    return EFFORT_BUDGETS.get(effort, EFFORT_BUDGETS[DEFAULT_EFFORT])


def effort_for_budget(budget: int) -> str:
    """The smallest effort whose budget covers ``budget`` (the inverse of ``budget_for_effort``).

    Only the OpenAI-common efforts are returned (minimal..high, xhigh above that); a codec whose target
    knows fewer levels clamps further itself.
    """
    for effort in ("minimal", "low", "medium", "high", "xhigh"):
        if budget <= EFFORT_BUDGETS[effort]:
            return effort
    return "xhigh"


def fit_thinking(budget: int, max_tokens: int) -> tuple[int, int]:
    """Make ``budget`` legal for Anthropic (>= 1024, < max_tokens).

    When the budget does not fit, the output limit grows by the budget rather than the budget shrinking:
    the caller's limit then still bounds the visible answer, which is what most clients of effort-based
    formats mean by it.
    """
    budget = max(budget, MIN_THINKING_BUDGET)
    if max_tokens <= budget:
        max_tokens = budget + max(max_tokens, 1)
    return budget, max_tokens


def thinking_requested(rc: ir.ReasoningConfig | None) -> bool:
    """Whether the caller asked the model to think: a thinking mode other than disabled, a non-zero budget,
    or a reasoning effort other than ``none`` that is a request (OpenAI, Gemini) and not Anthropic's
    output-effort hint."""
    if rc is None:
        return False
    if rc.mode is not None:
        return rc.mode != "disabled"
    if rc.budget_tokens is not None:
        return rc.budget_tokens != 0
    return rc.effort is not None and rc.effort != "none" and not rc.effort_is_hint
