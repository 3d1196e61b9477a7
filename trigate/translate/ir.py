"""The intermediate representation every wire format is decoded into and encoded from.

It is at least as rich as the richest text format (Anthropic Messages / OpenAI Chat / Responses), so a
format -> IR -> same format round trip loses nothing. Fields a format has but the IR does not model are
kept in ``extras[format_name]`` and restored only when encoding back into that same format.

Pure data: no I/O, no trio. Classes are mutable slotted attrs classes because decoders build them
incrementally and stream events are created per chunk on the hot path.
"""

from __future__ import annotations

from typing import Any, Literal

from attrs import define, field

Role = Literal["system", "developer", "user", "assistant", "tool"]

# IR stop reasons. Each format maps its own vocabulary onto these (protocols.md §11.9).
StopReason = Literal[
    "end_turn",  # natural stop
    "stop_sequence",  # a caller stop sequence matched (see Response.stop_sequence)
    "max_tokens",  # output limit reached
    "tool_use",  # the model wants tool results
    "content_filter",  # safety / refusal
    "pause_turn",  # Anthropic server-tool pause
    "context_window_exceeded",
]


# --------------------------------------------------------------------------------------------
# Content parts
# --------------------------------------------------------------------------------------------


@define
class Text:
    text: str
    # Anthropic prompt caching marker, kept for Anthropic round trips.
    cache_control: dict[str, Any] | None = None
    # Anthropic citations / OpenAI annotations, opaque.
    citations: list[Any] | None = None


@define
class Image:
    """An image by URL (http(s)) or inline base64 data (never both)."""

    url: str | None = None
    media_type: str | None = None
    data: str | None = None  # base64, without the data: prefix
    detail: str | None = None  # OpenAI only
    file_id: str | None = None
    cache_control: dict[str, Any] | None = None


@define
class Audio:
    data: str  # base64
    format: str  # wav | mp3 | ...


@define
class Document:
    """A file such as a PDF: inline base64, a URL, plain text, or a provider file id."""

    media_type: str | None = None
    data: str | None = None  # base64, or plain text when media_type is text/plain
    url: str | None = None
    file_id: str | None = None
    filename: str | None = None
    title: str | None = None
    context: str | None = None
    citations: dict[str, Any] | None = None
    cache_control: dict[str, Any] | None = None


@define
class ToolCall:
    """A call the assistant makes. ``arguments`` is the JSON text exactly as produced."""

    id: str
    name: str
    arguments: str = ""
    kind: Literal["function", "custom"] = "function"
    # Gemini thoughtSignature and similar provider data that must come back on later turns.
    signature: str | None = None
    # Responses API item id (fc_...) when distinct from the call id.
    item_id: str | None = None
    cache_control: dict[str, Any] | None = None


@define
class ToolResult:
    call_id: str
    content: list[Part] = field(factory=list)  # Text / Image / Document parts
    is_error: bool = False
    name: str | None = None  # Gemini needs the function name on results
    cache_control: dict[str, Any] | None = None


@define
class Reasoning:
    """Model thinking. Anthropic ``thinking`` (text + signature) or ``redacted_thinking`` (data),
    Responses ``reasoning`` items (summary / encrypted_content)."""

    text: str = ""
    signature: str | None = None
    redacted: str | None = None  # Anthropic redacted_thinking.data
    summary: list[str] | None = None  # Responses summary_text parts
    encrypted_content: str | None = None  # Responses reasoning.encrypted_content
    id: str | None = None  # Responses reasoning item id


@define
class Refusal:
    text: str


Part = Text | Image | Audio | Document | ToolCall | ToolResult | Reasoning | Refusal


@define
class Message:
    role: Role
    content: list[Part] = field(factory=list)
    name: str | None = None
    # Responses API message item id (msg_...), kept for round trips.
    id: str | None = None


# --------------------------------------------------------------------------------------------
# Request
# --------------------------------------------------------------------------------------------


@define
class Tool:
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None  # JSON Schema of the arguments
    strict: bool | None = None
    kind: Literal["function", "custom"] = "function"
    # Custom tool input format (OpenAI custom tools), opaque.
    format: dict[str, Any] | None = None
    cache_control: dict[str, Any] | None = None


@define
class ToolChoice:
    mode: Literal["auto", "none", "required", "tool"]
    name: str | None = None  # when mode == "tool"


@define
class ResponseFormat:
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema: dict[str, Any] | None = None
    strict: bool | None = None
    description: str | None = None


@define
class ReasoningConfig:
    """Reasoning settings. ``effort`` is the OpenAI vocabulary (minimal/low/medium/high/...);
    ``budget_tokens`` the Anthropic/Gemini one. Encoders convert whichever is set."""

    effort: str | None = None
    budget_tokens: int | None = None
    summary: str | None = None  # Responses reasoning.summary
    # Anthropic thinking.type: enabled | adaptive | disabled; None when unspecified.
    mode: str | None = None
    display: str | None = None  # Anthropic thinking.display
    # ``effort`` is Anthropic's output_config.effort (Bedrock: outputConfig.effort), a hint about how much to
    # spend on the whole answer, not a request for thinking as OpenAI's reasoning_effort is.
    effort_is_hint: bool = False


@define
class Request:
    model: str
    messages: list[Message] = field(factory=list)
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] | None = None
    seed: int | None = None
    n: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    tools: list[Tool] = field(factory=list)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    reasoning: ReasoningConfig | None = None
    stream: bool = False
    include_usage: bool = False  # the client asked for usage in the stream
    user: str | None = None  # safety_identifier / user / metadata.user_id
    metadata: dict[str, Any] | None = None
    service_tier: str | None = None
    # Responses API state
    store: bool | None = None
    previous_response_id: str | None = None
    # Format-specific fields the IR does not model: {format_name: {field: value}}.
    extras: dict[str, dict[str, Any]] = field(factory=dict)


# --------------------------------------------------------------------------------------------
# Response
# --------------------------------------------------------------------------------------------


@define
class Usage:
    """Token usage with explicit semantics (protocols.md §11.10).

    ``input_tokens`` is the whole prompt including cache reads and writes; ``output_tokens`` includes
    reasoning tokens. Encoders derive each format's own fields from these.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int | None = None
    input_audio_tokens: int | None = None
    output_audio_tokens: int | None = None

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def fold_reported_total(self, total: Any) -> Usage:
        """Make the upstream's own ``total`` the usage's total. Tokens it counts only there were generated
        but never shown (Gemini's OpenAI-compatible endpoint leaves thinking out of completion_tokens), so
        they are output, and reasoning when the upstream gave no reasoning count: every format's
        encoding, the limits and the cost then agree with what the provider bills."""
        if type(total) is int:
            hidden = total - self.input_tokens - self.output_tokens
            if hidden > 0:
                self.output_tokens += hidden
                if self.reasoning_tokens is None:
                    self.reasoning_tokens = hidden
        return self


@define
class Response:
    id: str
    model: str
    content: list[Part] = field(factory=list)  # Text, Refusal, Reasoning, ToolCall, Image, Audio
    stop_reason: StopReason | None = None
    stop_sequence: str | None = None
    usage: Usage | None = None
    created: int = 0
    extras: dict[str, dict[str, Any]] = field(factory=dict)


# --------------------------------------------------------------------------------------------
# Stream events
#
# Decoders turn upstream stream events into this sequence; encoders turn it into client events.
#   MessageStart
#   ( BlockStart  (TextDelta | ReasoningDelta | SignatureDelta | ToolArgsDelta | RefusalDelta)*  BlockStop )*
#   MessageEnd
# or, at any point, StreamError (terminal). ``index`` numbers content blocks within the message from 0,
# as Anthropic does; encoders for formats that count differently (Chat tool_calls[].index) keep
# their own counters.
# --------------------------------------------------------------------------------------------

BlockKind = Literal["text", "reasoning", "redacted_reasoning", "tool_call", "refusal"]


@define
class MessageStart:
    id: str
    model: str
    created: int = 0
    usage: Usage | None = None  # input-side usage when known up front (Anthropic message_start)


@define
class BlockStart:
    index: int
    kind: BlockKind
    tool_id: str | None = None  # tool_call
    tool_name: str | None = None  # tool_call
    data: str | None = None  # redacted_reasoning payload
    signature: str | None = None  # tool_call provider signature (Gemini thoughtSignature)


@define
class TextDelta:
    index: int
    text: str


@define
class ReasoningDelta:
    index: int
    text: str


@define
class SignatureDelta:
    index: int
    signature: str


@define
class ToolArgsDelta:
    index: int
    fragment: str


@define
class RefusalDelta:
    index: int
    text: str


@define
class BlockStop:
    index: int


@define
class MessageEnd:
    stop_reason: StopReason | None
    stop_sequence: str | None = None
    usage: Usage | None = None  # final cumulative usage when the upstream reported it


@define
class StreamError:
    """Terminal: the upstream failed after the stream began. ``error`` is a trigate.errors.GatewayError."""

    error: Any


StreamEvent = (
    MessageStart | BlockStart | TextDelta | ReasoningDelta | SignatureDelta | ToolArgsDelta | RefusalDelta
    | BlockStop | MessageEnd | StreamError
)
