"""Bedrock request encoding from other formats' IR (Chat, Anthropic, Responses), and decode errors."""

from __future__ import annotations

import base64
import json

import pytest

from trigate.errors import GatewayError
from trigate.formats import anthropic, openai_chat
from trigate.formats.bedrock import CODEC, model_family, tool_id
from trigate.translate import ir

CLAUDE = "anthropic.claude-3-5-sonnet-20240620-v1:0"
LLAMA = "meta.llama3-1-70b-instruct-v1:0"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def chat(body: dict, model: str = CLAUDE) -> dict:
    return CODEC.encode_request(openai_chat.CODEC.decode_request({"model": "m", **body}), model)


def _texts(blocks: list[dict]) -> list[str]:
    return [b["text"] for b in blocks if "text" in b]


def test_model_family() -> None:
    assert model_family("anthropic.claude-3-haiku-20240307-v1:0") == "anthropic"
    assert model_family("us.anthropic.claude-sonnet-4-5-20250929-v1:0") == "anthropic"
    assert model_family("global.anthropic.claude-sonnet-4-5-20250929-v1:0") == "anthropic"
    assert model_family("us-gov.meta.llama3-1-8b-instruct-v1:0") == "meta"
    assert model_family("arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-pro-v1:0") == "amazon"
    assert model_family("arn:aws:bedrock:us-east-1:123456789012:inference-profile/eu.mistral.pixtral") == "mistral"
    assert model_family("arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123") == ""
    assert model_family("openai.gpt-oss-120b-1:0") == "openai"


def test_system_messages_hoisted_and_turns_merged() -> None:
    out = chat(
        {
            "messages": [
                {"role": "assistant", "content": "Earlier answer."},
                {"role": "system", "content": "Rule one."},
                {"role": "user", "content": "First."},
                {"role": "developer", "content": "Rule two."},
                {"role": "user", "content": "Second."},
            ]
        }
    )
    assert out["system"] == [{"text": "Rule one."}, {"text": "Rule two."}]
    # A leading assistant turn gets a placeholder user turn; consecutive user turns merge.
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "user"]
    assert out["messages"][0]["content"] == [{"text": anthropic.PLACEHOLDER_USER_TEXT}]
    assert _texts(out["messages"][2]["content"]) == ["First.", "Second."]
    assert out["inferenceConfig"] == {"maxTokens": 8192}  # Claude 3.5 Sonnet's ceiling, §11.8


def test_tool_history_results_first_and_ids() -> None:
    bad_id = "call/with spaces|and-a-very-long-suffix-that-goes-on-and-on-beyond-sixty-four-chars"
    out = chat(
        {
            "messages": [
                {"role": "user", "content": "Weather?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": bad_id, "type": "function", "function": {"name": "w", "arguments": '{"c":"Paris"}'}},
                        {"id": "call_ok.1:x", "type": "function", "function": {"name": "w", "arguments": ""}},
                    ],
                },
                {"role": "tool", "tool_call_id": bad_id, "content": "21C"},
                {"role": "tool", "tool_call_id": "call_ok.1:x", "content": "18C"},
                {"role": "user", "content": "And tomorrow?"},
            ],
            "tools": [{"type": "function", "function": {"name": "w", "parameters": {"type": "object"}}}],
        }
    )
    assistant, user = out["messages"][1], out["messages"][2]
    uses = [b["toolUse"] for b in assistant["content"]]
    new_id = tool_id(bad_id)
    assert new_id != bad_id and len(new_id) <= 64 and new_id == tool_id(bad_id)
    assert [u["toolUseId"] for u in uses] == [new_id, "call_ok.1:x"]
    assert uses[0]["input"] == {"c": "Paris"} and uses[1]["input"] == {}
    assert [list(b) for b in user["content"]] == [["toolResult"], ["toolResult"], ["text"]]
    assert [b["toolResult"]["toolUseId"] for b in user["content"][:2]] == [new_id, "call_ok.1:x"]
    assert user["content"][0]["toolResult"]["content"] == [{"text": "21C"}]
    assert out["toolConfig"] == {"tools": [{"toolSpec": {"name": "w", "inputSchema": {"json": {"type": "object"}}}}]}


def test_tool_choice_none_keeps_tool_config_only_with_tool_history() -> None:
    tools = [{"type": "function", "function": {"name": "w", "parameters": {"type": "object", "properties": {}}}}]
    out = chat({"messages": [{"role": "user", "content": "hi"}], "tools": tools, "tool_choice": "none"})
    assert "toolConfig" not in out
    history = [
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "done"},
    ]
    out = chat({"messages": history, "tools": tools, "tool_choice": "none"})
    assert out["toolConfig"] == {
        "tools": [{"toolSpec": {"name": "w", "inputSchema": {"json": {"type": "object", "properties": {}}}}}]
    }
    # No tools at all in the request: Bedrock still needs a toolConfig, built from the history's calls.
    out = chat({"messages": history})
    assert out["toolConfig"] == {"tools": [{"toolSpec": {"name": "w", "inputSchema": {"json": {"type": "object"}}}}]}


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"auto": {}}),
        ("required", {"any": {}}),
        ({"type": "function", "function": {"name": "w"}}, {"tool": {"name": "w"}}),
    ],
)
def test_tool_choices(choice, expected) -> None:
    tools = [{"type": "function", "function": {"name": "w"}}]
    out = chat({"messages": [{"role": "user", "content": "hi"}], "tools": tools, "tool_choice": choice})
    assert out["toolConfig"]["toolChoice"] == expected
    assert out["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"] == {"json": {"type": "object", "properties": {}}}


def test_models_without_status_and_specific_tool_choice() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}],
            },
        ],
        "tools": [{"type": "function", "function": {"name": "w"}}],
        "tool_choice": {"type": "function", "function": {"name": "w"}},
    }
    req = openai_chat.CODEC.decode_request({"model": "m", **body})
    req.messages.append(ir.Message("tool", [ir.ToolResult("c1", [ir.Text("boom")], is_error=True)]))
    claude = CODEC.encode_request(req, CLAUDE)
    assert claude["messages"][2]["content"][0]["toolResult"]["status"] == "error"
    llama = CODEC.encode_request(req, LLAMA)
    result = llama["messages"][2]["content"][0]["toolResult"]
    assert "status" not in result and result["content"] == [{"text": "Error: boom"}]
    assert llama["toolConfig"]["toolChoice"] == {"any": {}}
    assert "inferenceConfig" not in llama  # no max-token default for models the table does not know


def test_images() -> None:
    out = chat(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "look"},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                        {"type": "image_url", "image_url": {"url": "data:image/jpg;base64,/9j/4AAQ"}},
                    ],
                }
            ]
        }
    )
    blocks = out["messages"][0]["content"]
    assert blocks[1] == {"image": {"format": "png", "source": {"bytes": PNG}}}
    assert blocks[2]["image"]["format"] == "jpeg"
    with pytest.raises(GatewayError) as exc:
        chat(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}],
                    }
                ]
            }
        )
    assert exc.value.status == 400 and "Bedrock needs inline image data" in exc.value.message
    assert exc.value.param == "messages[0].content[0]"
    with pytest.raises(GatewayError, match="not supported by Bedrock"):
        chat(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}],
                    }
                ]
            }
        )


def test_documents_names_sanitised_and_unique() -> None:
    pdf = "data:application/pdf;base64,JVBERi0xLjQ="
    out = chat(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "file", "file": {"filename": "my_report.v2.pdf", "file_data": pdf}},
                        {"type": "file", "file": {"filename": "my report v2.pdf", "file_data": pdf}},
                        {"type": "file", "file": {"filename": "<script>!!", "file_data": pdf}},
                        {"type": "text", "text": "Compare."},
                    ],
                }
            ]
        }
    )
    docs = [b["document"] for b in out["messages"][0]["content"][:3]]
    assert [d["name"] for d in docs] == ["my report v2", "my report v2 (2)", "script"]
    assert all(d["format"] == "pdf" and d["source"] == {"bytes": "JVBERi0xLjQ="} for d in docs)


def test_plain_text_document_sent_as_bytes() -> None:
    req = ir.Request(
        model="m",
        messages=[
            ir.Message(
                "user", [ir.Document(media_type="text/plain", data="héllo", title="Notes.txt"), ir.Text("Read it.")]
            )
        ],
    )
    doc = CODEC.encode_request(req, CLAUDE)["messages"][0]["content"][0]["document"]
    assert doc == {"format": "txt", "name": "Notes", "source": {"bytes": base64.b64encode("héllo".encode()).decode()}}
    with pytest.raises(GatewayError, match="inline document data"):
        CODEC.encode_request(
            ir.Request(model="m", messages=[ir.Message("user", [ir.Document(url="https://example.com/a.pdf")])]), CLAUDE
        )


def test_reasoning_effort_becomes_thinking_for_claude() -> None:
    out = chat(
        {
            "messages": [{"role": "user", "content": "think"}],
            "reasoning_effort": "high",
            "max_completion_tokens": 1000,
            "temperature": 0.3,
            "top_p": 0.5,
        }
    )
    assert out["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 16384}}
    # The budget must stay below maxTokens; temperature/topP are not allowed to vary with thinking.
    assert out["inferenceConfig"] == {"maxTokens": 16384 + 1000}
    llama = chat({"messages": [{"role": "user", "content": "think"}], "reasoning_effort": "high"}, LLAMA)
    assert "additionalModelRequestFields" not in llama
    oss = chat(
        {"messages": [{"role": "user", "content": "think"}], "reasoning_effort": "minimal"}, "openai.gpt-oss-120b-1:0"
    )
    assert oss["additionalModelRequestFields"] == {"reasoning_effort": "low"}


def test_thinking_gives_way_to_forced_tool() -> None:
    out = chat(
        {
            "messages": [{"role": "user", "content": "x"}],
            "reasoning_effort": "high",
            "tools": [{"type": "function", "function": {"name": "w"}}],
            "tool_choice": "required",
        }
    )
    assert "additionalModelRequestFields" not in out


def test_anthropic_request_to_bedrock() -> None:
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 4000,
        "system": [{"type": "text", "text": "Long context.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        "thinking": {"type": "enabled", "budget_tokens": 2000},
        "top_k": 5,
        "tools": [{"name": "calc", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": "2+2?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "add", "signature": "sigA"},
                    {"type": "redacted_thinking", "data": "REDACTED=="},
                    {"type": "tool_use", "id": "toolu_01", "name": "calc", "input": {"e": "2+2"}},
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "4", "is_error": False}],
            },
        ],
    }
    out = CODEC.encode_request(anthropic.CODEC.decode_request(body), "us.anthropic.claude-sonnet-4-5-20250929-v1:0")
    assert out["system"] == [{"text": "Long context."}, {"cachePoint": {"type": "default", "ttl": "1h"}}]
    assert out["toolConfig"]["tools"][1] == {"cachePoint": {"type": "default"}}
    assert out["messages"][1]["content"] == [
        {"reasoningContent": {"reasoningText": {"text": "add", "signature": "sigA"}}},
        {"reasoningContent": {"redactedContent": "REDACTED=="}},
        {"toolUse": {"toolUseId": "toolu_01", "name": "calc", "input": {"e": "2+2"}}},
    ]
    # top_k is not allowed with thinking.
    assert out["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 2000}}
    assert out["inferenceConfig"] == {"maxTokens": 4000}


def test_foreign_and_unsigned_reasoning_left_out() -> None:
    req = ir.Request(
        model="m",
        messages=[
            ir.Message("user", [ir.Text("q")]),
            ir.Message(
                "assistant",
                [
                    ir.Reasoning(text="summary only"),
                    ir.Reasoning(text="packed", signature="trigate:v1:eyJzIjoieCJ9"),
                    ir.Text("answer"),
                ],
            ),
            ir.Message("user", [ir.Text("more")]),
        ],
    )
    out = CODEC.encode_request(req, CLAUDE)
    assert out["messages"][1]["content"] == [{"text": "answer"}]


def test_response_formats() -> None:
    out = chat({"messages": [{"role": "user", "content": "json"}], "response_format": {"type": "json_object"}})
    assert out["system"] == [{"text": anthropic.JSON_OBJECT_INSTRUCTION}]
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    out = chat(
        {
            "messages": [{"role": "user", "content": "json"}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "thing", "schema": schema, "strict": True},
            },
        }
    )
    js = out["outputConfig"]["textFormat"]["structure"]["jsonSchema"]
    assert out["outputConfig"]["textFormat"]["type"] == "json_schema"
    assert json.loads(js["schema"]) == schema and js["name"] == "thing"


def test_sampling_metadata_and_tier() -> None:
    out = chat(
        {
            "messages": [{"role": "user", "content": "x"}],
            "temperature": 1.7,
            "stop": ["a", "b"],
            "metadata": {"ok": "fine-value", "bad": "naïve", "weird key!": "x"},
            "service_tier": "flex",
            "seed": 3,
            "presence_penalty": 0.5,
            "max_tokens": 50,
        },
        LLAMA,
    )
    assert out["inferenceConfig"] == {"maxTokens": 50, "temperature": 1, "stopSequences": ["a", "b"]}
    assert out["requestMetadata"] == {"ok": "fine-value"}
    assert out["serviceTier"] == {"type": "flex"}
    out = chat({"messages": [{"role": "user", "content": "x"}], "service_tier": "auto"}, LLAMA)
    assert "serviceTier" not in out
    req = openai_chat.CODEC.decode_request({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    req.top_k = 20
    assert CODEC.encode_request(req, CLAUDE)["additionalModelRequestFields"] == {"top_k": 20}
    assert "additionalModelRequestFields" not in CODEC.encode_request(req, LLAMA)


def test_unsupported_requests() -> None:
    with pytest.raises(GatewayError, match="n > 1"):
        chat({"messages": [{"role": "user", "content": "x"}], "n": 2})
    req = ir.Request(
        model="m", messages=[ir.Message("user", [ir.Text("x")])], tools=[ir.Tool("grammar", kind="custom")]
    )
    with pytest.raises(GatewayError, match="custom"):
        CODEC.encode_request(req, CLAUDE)
    req = ir.Request(
        model="m",
        messages=[ir.Message("user", [ir.Text("x")]), ir.Message("assistant", [ir.ToolCall("c", "f", "{broken")])],
    )
    with pytest.raises(GatewayError, match="not valid JSON"):
        CODEC.encode_request(req, CLAUDE)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ([], None),
        ({"messages": {}}, "messages"),
        ({"messages": [{"role": "system", "content": [{"text": "x"}]}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": [{"text": "a", "image": {}}]}]}, "messages[0].content[0]"),
        ({"messages": [{"role": "user", "content": [{"text": 5}]}]}, "messages[0].content[0].text"),
        (
            {"messages": [{"role": "user", "content": [{"image": {"format": "bmp", "source": {"bytes": "x"}}}]}]},
            "messages[0].content[0].image.format",
        ),
        (
            {"messages": [{"role": "user", "content": [{"toolUse": {"toolUseId": "a", "name": "f", "input": {}}}]}]},
            "messages[0].content[0].toolUse",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"toolResult": {"toolUseId": "a", "content": [], "status": "meh"}}]}
                ]
            },
            "messages[0].content[0].toolResult.status",
        ),
        (
            {"messages": [{"role": "user", "content": [{"document": {"format": "pdf", "source": {"bytes": "x"}}}]}]},
            "messages[0].content[0].document.name",
        ),
        ({"inferenceConfig": {"maxTokens": 0}}, "inferenceConfig.maxTokens"),
        ({"inferenceConfig": {"temperature": "hot"}}, "inferenceConfig.temperature"),
        ({"toolConfig": {"tools": [{"toolSpec": {"name": "f"}}]}}, "toolConfig.tools[0].toolSpec.inputSchema"),
        ({"toolConfig": {"tools": [], "toolChoice": {"none": {}}}}, "toolChoice"),
        (
            {"additionalModelRequestFields": {"thinking": {"type": "maybe"}}},
            "additionalModelRequestFields.thinking.type",
        ),
        (
            {"outputConfig": {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": {"schema": "{nope"}}}}},
            "outputConfig.textFormat.structure.jsonSchema.schema",
        ),
        ({"requestMetadata": {"a": 1}}, "requestMetadata"),
    ],
)
def test_decode_errors_name_the_field(body, param) -> None:
    with pytest.raises(GatewayError) as exc:
        CODEC.decode_request(body)
    assert exc.value.kind == "invalid_request" and exc.value.status == 400
    assert exc.value.param == param


def test_decode_document_sources_audio_and_stray_cache_point() -> None:
    body = {
        "system": [{"cachePoint": {"type": "default"}}, {"text": "sys"}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"document": {"name": "a", "source": {"text": "plain words"}}},
                    {"document": {"format": "md", "name": "b", "source": {"content": [{"text": "x"}, {"text": "y"}]}}},
                    {
                        "document": {
                            "format": "pdf",
                            "name": "c",
                            "source": {"s3Location": {"uri": "s3://b/c.pdf", "bucketOwner": "123"}},
                        }
                    },
                    {"audio": {"format": "wav", "source": {"bytes": "UklGRg=="}}},
                ],
            }
        ],
    }
    req = CODEC.decode_request(body)
    a, b, c, audio = req.messages[1].content
    assert (a.media_type, a.data, b.media_type, b.data) == ("text/plain", "plain words", "text/plain", "x\ny")
    assert (c.url, c.media_type) == ("s3://b/c.pdf", "application/pdf")
    assert audio == ir.Audio(data="UklGRg==", format="wav")
    out = CODEC.encode_request(req, CLAUDE)
    # A cachePoint with nothing before it is kept as it was; text documents come back as txt bytes.
    assert out["system"] == [{"cachePoint": {"type": "default"}}, {"text": "sys"}]
    blocks = out["messages"][0]["content"]
    assert blocks[0]["document"] == {
        "format": "txt",
        "name": "a",
        "source": {"bytes": base64.b64encode(b"plain words").decode()},
    }
    assert blocks[2]["document"]["source"] == {"s3Location": {"uri": "s3://b/c.pdf"}}
    assert blocks[3] == {"audio": {"format": "wav", "source": {"bytes": "UklGRg=="}}}
    # An S3 document means nothing to other providers: a clear 400, not a silent drop.
    with pytest.raises(GatewayError) as exc:
        openai_chat.CODEC.encode_request(req, "gpt")
    assert exc.value.kind == "invalid_request"
