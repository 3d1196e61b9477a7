"""Pure pieces of the Gemini and Bedrock Converse ingress: credentials, path formats, URL methods,
countTokens bodies, body checks, and the fast-path usage sniffers."""

from __future__ import annotations

import pytest

from trigate.api.converse_ingress import validate_converse
from trigate.api.gemini_ingress import count_body, split_method, validate_contents
from trigate.errors import GatewayError
from trigate.formats import client_format_for_path
from trigate.formats.bedrock_stream import BedrockStreamEncoder
from trigate.formats.gemini_stream import GeminiStreamEncoder
from trigate.policies.auth import credential_from_headers, sigv4_access_key
from trigate.translate import ir
from trigate.upstream.sniff import BedrockSniffer, GeminiSniffer, sniffer_for

SIGV4 = ("AWS4-HMAC-SHA256 Credential={}/20260101/us-east-1/bedrock/aws4_request, "
         "SignedHeaders=host;x-amz-date, Signature=0123abcd")


def test_google_key_header_is_a_credential() -> None:
    assert credential_from_headers({"x-goog-api-key": "gk"}) == "gk"
    # Authorization wins, as for every other client
    assert credential_from_headers({"x-goog-api-key": "gk", "authorization": "Bearer bk"}) == "bk"


@pytest.mark.parametrize("key", ["gw-key", "AKIDEXAMPLE", "with/slash/inside"])
def test_sigv4_access_key_id_is_the_credential(key: str) -> None:
    assert credential_from_headers({"authorization": SIGV4.format(key)}) == key


@pytest.mark.parametrize("header", [
    "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=00",  # no Credential
    "AWS4-HMAC-SHA256 Credential=onlykey, Signature=00",  # no scope
    "AWS4-HMAC-SHA256 Credential=/20260101/us-east-1/bedrock/aws4_request",  # empty id
])
def test_malformed_sigv4_gives_no_credential(header: str) -> None:
    assert sigv4_access_key(header) is None


@pytest.mark.parametrize(("path", "fmt"), [
    ("/v1beta/models/gemini-2.5-flash:generateContent", "gemini"),
    ("/v1beta/models/x:embedEverything", "gemini"),
    ("/v1/models/openai/gpt-4o:streamGenerateContent", "gemini"),
    ("/v1/models/gpt-4o:countTokens", "gemini"),
    ("/v1/models/ft:gpt-4o:org:abc", "openai_chat"),  # an OpenAI model id with colons
    ("/model/us.anthropic.claude-sonnet-4-5-v1:0/converse", "bedrock"),
    ("/model/x/converse-stream", "bedrock"),
    ("/v1/chat/completions", "openai_chat"),
])
def test_client_format_for_path(path: str, fmt: str) -> None:
    assert client_format_for_path(path) == fmt


def test_split_method() -> None:
    assert split_method("gemini-2.5-flash:generateContent") == ("gemini-2.5-flash", "generateContent")
    assert split_method("models/gemini-2.5-flash:countTokens") == ("gemini-2.5-flash", "countTokens")
    assert split_method("openai/gpt-4o:streamGenerateContent") == ("openai/gpt-4o", "streamGenerateContent")
    assert split_method("bedrock/us.anthropic.x-v1:0:generateContent") == ("bedrock/us.anthropic.x-v1:0",
                                                                           "generateContent")
    with pytest.raises(GatewayError) as info:
        split_method("gemini-2.5-flash")
    assert info.value.status == 404


USER = [{"role": "user", "parts": [{"text": "hi"}]}]


def test_count_body_forms() -> None:
    assert count_body({"contents": USER}) == {"contents": USER}
    full = {"generateContentRequest": {"model": "models/x", "contents": USER, "systemInstruction": {"parts": []},
                                       "tools": [{"functionDeclarations": []}]}}
    assert count_body(full) == {"contents": USER, "systemInstruction": {"parts": []},
                                "tools": [{"functionDeclarations": []}]}
    for bad in ({}, {"contents": []}, {"generateContentRequest": "x"}, {"contents": [{"role": "user"}]}):
        with pytest.raises(GatewayError) as info:
            count_body(bad)
        assert info.value.kind == "invalid_request"


def test_validate_contents_names_the_field() -> None:
    validate_contents({"contents": USER})
    with pytest.raises(GatewayError, match=r"contents\[1\]\.parts"):
        validate_contents({"contents": [*USER, {"role": "model"}]})


def test_validate_converse_names_the_field() -> None:
    validate_converse({"messages": [{"role": "user", "content": [{"text": "hi"}]}]})
    for body, field in (({}, "messages"), ({"messages": [{"role": "system", "content": []}]}, "messages.0.role"),
                        ({"messages": [{"role": "user"}]}, "messages.0.content")):
        with pytest.raises(GatewayError) as info:
            validate_converse(body)
        assert info.value.param == field


USAGE = ir.Usage(input_tokens=12, output_tokens=7)
EVENTS: list[ir.StreamEvent] = [
    ir.MessageStart(id="r1", model="m"),
    ir.BlockStart(0, "text"),
    ir.TextDelta(0, "hello "),
    ir.TextDelta(0, "world"),
    ir.BlockStop(0),
    ir.MessageEnd("end_turn", usage=USAGE),
]


def _pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1, 7, 10_000])
def test_gemini_sniffer_reads_usage_and_passes_bytes(size: int) -> None:
    enc = GeminiStreamEncoder(ir.Request(model="m"))
    stream = b"".join(enc.encode(e) for e in EVENTS)
    sniffer = sniffer_for("gemini", {})
    assert isinstance(sniffer, GeminiSniffer)
    assert b"".join(sniffer.feed(p) for p in _pieces(stream, size)) + sniffer.close() == stream
    assert sniffer.usage is not None
    assert (sniffer.usage.input_tokens, sniffer.usage.output_tokens) == (12, 7)


def test_gemini_sniffer_body() -> None:
    body = b'{"candidates":[],"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":4,"totalTokenCount":7}}'
    u = GeminiSniffer().usage_from_body(body)
    assert u is not None and (u.input_tokens, u.output_tokens) == (3, 4)


@pytest.mark.parametrize("size", [1, 13, 10_000])
def test_bedrock_sniffer_reads_usage_and_passes_bytes(size: int) -> None:
    enc = BedrockStreamEncoder()
    stream = b"".join(enc.encode(e) for e in EVENTS)
    sniffer = sniffer_for("bedrock", {})
    assert isinstance(sniffer, BedrockSniffer)
    assert b"".join(sniffer.feed(p) for p in _pieces(stream, size)) == stream
    assert sniffer.usage is not None
    assert (sniffer.usage.input_tokens, sniffer.usage.output_tokens) == (12, 7)


def test_bedrock_sniffer_survives_broken_framing() -> None:
    sniffer = BedrockSniffer()
    junk = b"\x00\x00\x00\x10" + b"\xff" * 40
    assert sniffer.feed(junk) == junk  # relayed untouched: the client's decoder reports the break
    assert sniffer.feed(b"more") == b"more" and sniffer.usage is None


def test_bedrock_sniffer_body() -> None:
    u = BedrockSniffer().usage_from_body(b'{"output":{},"usage":{"inputTokens":5,"outputTokens":2,"totalTokens":7}}')
    assert u is not None and (u.input_tokens, u.output_tokens) == (5, 2)
