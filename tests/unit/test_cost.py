"""Prices and cost: name normalisation, IR usage semantics, overrides, and the shipped table."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

import trigate
from trigate.config import ConfigError, parse_config
from trigate.observability.cost import Price, PriceTable, candidates, load_shipped, price_from
from trigate.translate.ir import Usage

SHIPPED = load_shipped()
TABLE = PriceTable(SHIPPED)


@pytest.mark.parametrize(("model", "kind", "expected"), [
    ("gpt-4o-mini", "openai", "gpt-4o-mini"),
    ("gpt-4o-2024-08-06", "openai", "gpt-4o"),  # dated snapshot
    ("openai/gpt-4.1-mini", "openrouter", "gpt-4.1-mini"),  # provider/ prefix
    ("claude-sonnet-4-5-20250929", "anthropic", "claude-sonnet-4-5"),
    ("claude-3-5-sonnet-latest", "anthropic", "claude-3-5-sonnet"),
    ("claude-opus-4.5", "anthropic", "claude-opus-4-5"),
    ("anthropic.claude-sonnet-4-5-20250929-v1:0", "bedrock", "claude-sonnet-4-5"),  # Bedrock id
    ("us.anthropic.claude-3-5-haiku-20241022-v1:0", "bedrock", "claude-3-5-haiku"),  # region profile
    ("global.anthropic.claude-haiku-4-5-20251001-v1:0", "bedrock", "claude-haiku-4-5"),
    ("amazon.nova-pro-v1:0", "bedrock", "nova-pro"),
    ("eu.amazon.nova-lite-v1:0", "bedrock", "nova-lite"),
    ("claude-sonnet-4-5@20250929", "vertex", "claude-sonnet-4-5"),  # Vertex
    ("gemini-2.5-flash-preview-05-20", "gemini", "gemini-2.5-flash"),
    ("gemini-2.5-flash-lite-preview-09-2025", "gemini", "gemini-2.5-flash-lite"),
    ("gemini-2.0-flash-001", "vertex", "gemini-2.0-flash"),
    ("mistral-medium-2508", "mistral", "mistral-medium"),
    ("deepseek-chat", "deepseek", "deepseek-chat"),
])
def test_upstream_names_find_their_price(model: str, kind: str, expected: str) -> None:
    assert TABLE.lookup(model, kind) == SHIPPED[expected]


def test_exact_names_win_over_normalised_ones() -> None:
    # mistral-large-2411 (Large 2.1) and -2512 (Large 3) must not collapse into one price
    assert TABLE.lookup("mistral-large-2411", "mistral") != TABLE.lookup("mistral-large-2512", "mistral")
    assert next(iter(candidates("gpt-4o-mini"))) == "gpt-4o-mini"


def test_provider_scoped_prices_apply_to_that_provider_only() -> None:
    groq = TABLE.lookup("openai/gpt-oss-120b", "groq")
    assert groq is not None and groq.input == SHIPPED["groq/openai/gpt-oss-120b"].input
    assert TABLE.lookup("openai/gpt-oss-120b", "openrouter") is None
    assert TABLE.lookup("llama-3.3-70b-versatile", "groq") == SHIPPED["groq/llama-3.3-70b-versatile"]


def test_unknown_models_have_no_price_and_no_cost() -> None:
    assert TABLE.lookup("mock-gpt", "mock") is None
    assert TABLE.cost_of(Usage(input_tokens=10, output_tokens=10), "mock-gpt", "mock") is None
    assert TABLE.cost_of(None, "gpt-4o", "openai") is None


def test_cost_follows_ir_usage_semantics() -> None:
    p = Price(input=3.0, output=15.0, cached_input=0.30, cache_write=3.75)
    # input_tokens INCLUDES cache reads and writes; output INCLUDES reasoning
    u = Usage(input_tokens=10_000, output_tokens=2_000, cache_read_tokens=6_000, cache_write_tokens=1_000,
              reasoning_tokens=1_500)
    fresh = 10_000 - 6_000 - 1_000
    expected = (fresh * 3.0 + 6_000 * 0.30 + 1_000 * 3.75 + 2_000 * 15.0) / 1e6
    assert p.cost(u) == pytest.approx(expected, rel=1e-12)


def test_missing_rates_fall_back_to_input_and_output() -> None:
    p = Price(input=1.0, output=2.0)
    u = Usage(input_tokens=100, output_tokens=50, cache_read_tokens=40, cache_write_tokens=10,
              input_audio_tokens=20, output_audio_tokens=5)
    assert p.cost(u) == pytest.approx((100 * 1.0 + 50 * 2.0) / 1e6)


def test_audio_tokens_use_audio_rates() -> None:
    p = SHIPPED["gpt-realtime"]
    u = Usage(input_tokens=1_000, output_tokens=500, cache_read_tokens=200, input_audio_tokens=600,
              output_audio_tokens=400)
    expected = ((1_000 - 200 - 600) * p.input + 200 * p.cached_input + 600 * p.audio_input
                + (500 - 400) * p.output + 400 * p.audio_output) / 1e6
    assert p.cost(u) == pytest.approx(expected)


def test_inconsistent_usage_never_costs_less_than_zero() -> None:
    p = Price(input=1.0, output=1.0, cached_input=0.1)
    assert p.cost(Usage(input_tokens=5, output_tokens=0, cache_read_tokens=50)) >= 0


def test_overrides_beat_the_shipped_table_at_every_level() -> None:
    t = PriceTable(SHIPPED, {"gpt-4o": price_from({"input": 1.0, "output": 1.0}),
                             "my-finetune": price_from({"input": 9.0, "output": 9.0})})
    assert t.lookup("gpt-4o-2024-08-06", "openai") == Price(input=1.0, output=1.0)
    assert t.lookup("openai/my-finetune", "openai") == Price(input=9.0, output=9.0)
    assert t.lookup("gpt-4o-mini", "openai") == SHIPPED["gpt-4o-mini"]


def test_lookups_are_memoised_but_bounded() -> None:
    t = PriceTable(SHIPPED)
    for i in range(5000):
        t.lookup(f"random-{i}", "openai")
    assert len(t._memo) <= 4096


def test_shipped_table_is_complete_and_inside_the_package() -> None:
    path = Path(trigate.__file__).parent / "data" / "prices.toml"
    raw = tomllib.loads(path.read_text())
    assert {"openai", "anthropic", "gemini", "bedrock", "mistral", "groq", "deepseek"} <= set(raw)
    for section in raw.values():
        for name, entry in section.items():
            assert entry["input"] >= 0 and entry["output"] >= 0, name
            assert set(entry) <= {"input", "output", "cached_input", "cache_write", "audio_input", "audio_output"}
    # every family ships its main models
    for model in ("gpt-5", "gpt-4.1", "gpt-4o-mini", "o4-mini", "claude-sonnet-4-5", "claude-opus-4-5",
                  "claude-haiku-4-5", "gemini-2.5-pro", "gemini-2.5-flash", "nova-pro", "deepseek-chat"):
        assert model in SHIPPED


def test_config_prices_are_validated() -> None:
    cfg = parse_config({"auth": {"open": True},
                        "observability": {"prices": {"my-model": {"input": 1.5, "output": 2, "cached_input": 0.1}}}},
                       env={})
    assert cfg.observability.prices["my-model"].cached_input == 0.1
    with pytest.raises(ConfigError) as info:
        parse_config({"auth": {"open": True}, "observability": {"prices": {"m": {"input": -1, "output": 1}}}}, env={})
    assert "observability.prices.m.input" in str(info.value)
    with pytest.raises(ConfigError) as info:
        parse_config({"auth": {"open": True}, "observability": {"prices": {"m": {"output": 1}}}}, env={})
    assert "input" in str(info.value)
    with pytest.raises(ConfigError) as info:
        parse_config({"auth": {"open": True}, "observability": {"tracing": {"sample_ratio": 2,
                                                                            "otlp_endpoint": "grpc://x"}}}, env={})
    assert "sample_ratio" in str(info.value) and "otlp_endpoint" in str(info.value)
