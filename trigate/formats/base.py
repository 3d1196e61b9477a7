"""What every wire-format module provides, so the I/O shell can pair any client format with any
provider format through the IR.

A format module (``trigate/formats/<name>.py``) exposes a module-level ``CODEC`` object satisfying
``Codec``. All of it is pure: dicts and bytes in, dicts, IR objects and bytes out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from attrs import frozen

from trigate.errors import GatewayError
from trigate.translate import ir


class StreamDecoder(Protocol):
    """Upstream stream events (SSE events, or AWS event-stream messages for Bedrock) -> IR events."""

    def feed(self, event: Any) -> list[ir.StreamEvent]: ...

    def close(self) -> list[ir.StreamEvent]:
        """The upstream ended. Returns the closing events; a StreamError if it ended too early."""
        ...


class StreamEncoder(Protocol):
    """IR events -> bytes in the client's streaming wire format (SSE frames)."""

    def encode(self, event: ir.StreamEvent) -> bytes: ...


class Codec(Protocol):
    name: str  # "openai_chat", "anthropic", "openai_responses", ...

    def decode_request(self, body: dict[str, Any]) -> ir.Request:
        """Raises GatewayError(invalid_request, param=<field path>) on bad input."""
        ...

    def encode_request(self, req: ir.Request, model: str) -> dict[str, Any]:
        """``model`` is the upstream model name to put in the body (if the format carries one)."""
        ...

    def decode_response(self, body: dict[str, Any]) -> ir.Response: ...

    def encode_response(self, resp: ir.Response, req: ir.Request) -> dict[str, Any]: ...

    def stream_decoder(self, req: ir.Request) -> StreamDecoder: ...

    def stream_encoder(self, req: ir.Request) -> StreamEncoder: ...

    def render_error(self, err: GatewayError) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) of an error answered before any byte of the response went out."""
        ...

    def render_stream_error(self, err: GatewayError) -> bytes:
        """The in-stream error event(s) sent after the stream began, before the connection closes."""
        ...

    def parse_error(self, status: int, body: bytes) -> GatewayError:
        """An upstream error response in this format -> GatewayError (never raises)."""
        ...


@frozen
class FunctionCodec:
    """A Codec assembled from a format module's functions, so each module declares its codec in one
    statement instead of a class of one-line delegating methods."""

    name: str
    decode_request: Callable[[dict[str, Any]], ir.Request]
    encode_request: Callable[[ir.Request, str], dict[str, Any]]
    decode_response: Callable[[dict[str, Any]], ir.Response]
    encode_response: Callable[[ir.Response, ir.Request], dict[str, Any]]
    stream_decoder: Callable[[ir.Request], StreamDecoder]
    stream_encoder: Callable[[ir.Request], StreamEncoder]
    render_error: Callable[[GatewayError], tuple[int, dict[str, Any]]]
    render_stream_error: Callable[[GatewayError], bytes]
    parse_error: Callable[[int, bytes], GatewayError]
