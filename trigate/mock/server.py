"""The fake upstream: a real HTTP server speaking provider wire formats, for tests, benchmarks and
the embedded default config.

Control endpoints (also usable over HTTP when run as ``trigate mock``):
  POST /_mock/faults    body: a Fault as JSON  -> queue a fault
  POST /_mock/script    body: a ScriptedCall as JSON ({"tool", "arguments", "model"?, "times"?})
                        -> the next request offering that tool calls it with those arguments
  GET  /_mock/requests  -> what the mock saw (paths, bodies, usage, disconnects)
  POST /_mock/reset
"""

from __future__ import annotations

import time
from typing import Any

import cattrs
import orjson
import trio
from quart import Response, request
from quart_trio import QuartTrio

from trigate.mock import anthropic, cloud_auth, openai_chat, openai_responses
from trigate.mock import bedrock as bedrock_routes
from trigate.mock import embeddings as embeddings_routes
from trigate.mock import gemini as gemini_routes
from trigate.mock import realtime as realtime_routes
from trigate.mock import rerank as rerank_routes
from trigate.mock.replies import ScriptedCall, plan_reply
from trigate.mock.replies import count_tokens as count_words
from trigate.mock.state import Fault, MockState, SeenRequest

_converter = cattrs.Converter(forbid_extra_keys=True)


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(obj), status=status, content_type="application/json", headers=headers)


def _valid_assertion(assertion: str, public_pem: bytes) -> bool:
    import base64

    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    def b64(part: str) -> bytes:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))

    try:
        header, claims, signature = assertion.split(".")
        key = serialization.load_pem_public_key(public_pem)
        key.verify(b64(signature), f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())  # type: ignore
        body = orjson.loads(b64(claims))
    except (ValueError, InvalidSignature, orjson.JSONDecodeError):
        return False
    return body.get("exp", 0) > time.time() and "cloud-platform" in body.get("scope", "")


def create_mock_app(state: MockState) -> QuartTrio:
    app = QuartTrio("trigate.mock")
    app.config["RESPONSE_TIMEOUT"] = None
    app.config["BODY_TIMEOUT"] = None
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024 * 1024

    async def prelude() -> tuple[SeenRequest, Fault | None]:
        raw = await request.get_data()
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            body = raw.decode("utf-8", "replace")
        seen = state.record(request.path, headers, body)
        model = body.get("model") if isinstance(body, dict) else None
        fault = state.take_fault(request.path, model)
        latency = state.latency_ms + ((fault.latency_ms or 0) if fault else 0)
        if latency:
            await trio.sleep(latency / 1000)
        return seen, fault

    async def chat(deployment: str | None = None, gemini: bool = False) -> Response:
        seen, fault = await prelude()
        denied = openai_auth_error(azure=deployment is not None or request.path.startswith("/openai/"))
        if denied is not None:
            return denied
        body = seen.body
        if not isinstance(body, dict):
            return openai_error(400, "We could not parse the JSON body of your request.")
        if deployment is not None:
            # Azure's dated API: the deployment in the path picks the model; the body's model is ignored.
            if not request.args.get("api-version"):
                return openai_error(404, "Resource not found (missing api-version)")
            body = {**body, "model": deployment}
        if fault and fault.status:
            return openai_error(fault.status, fault.message, fault.error_type, fault.headers)
        if fault and fault.malformed:
            return Response(b'{"id": "chatcmpl-broken", "choices": [', status=200, content_type="application/json")
        if not isinstance(body.get("messages"), list) or not body.get("model"):
            return openai_error(400, "'messages' and 'model' are required")
        conv = openai_chat.conversation(body, gemini)
        reply = plan_reply(conv, state.take_script(conv, body["model"]))
        if body.get("stream"):
            gen = openai_chat.stream(state, seen, body, reply, fault, gemini)
            return Response(gen, content_type="text/event-stream", headers={"cache-control": "no-cache"})
        seen.usage = openai_chat.usage_of(reply, gemini)
        seen.finished = time.monotonic()
        return _json(openai_chat.completion(body, reply, gemini))

    async def gemini_chat() -> Response:
        return await chat(gemini=True)

    app.add_url_rule("/v1/chat/completions", "chat", chat, methods=["POST"])
    app.add_url_rule("/openai/v1/chat/completions", "azure_v1_chat", chat, methods=["POST"])
    app.add_url_rule("/openai/deployments/<deployment>/chat/completions", "azure_chat", chat, methods=["POST"])
    app.add_url_rule("/v1beta/openai/chat/completions", "gemini_openai_chat", gemini_chat, methods=["POST"])

    def anthropic_error(status: int, message: str, etype: str | None = None,
                        headers: dict[str, str] | None = None) -> Response:
        return Response(anthropic.error_body(status, message, etype), status=status,
                        content_type="application/json", headers=headers)

    def anthropic_auth_error() -> Response | None:
        if not request.headers.get("anthropic-version"):
            return anthropic_error(400, "anthropic-version: header is required")
        if state.api_key is None:
            return None
        key = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")
        if key != state.api_key:
            return anthropic_error(401, "invalid x-api-key")
        return None

    @app.post("/v1/messages")
    async def messages() -> Response:
        seen, fault = await prelude()
        denied = anthropic_auth_error()
        if denied is not None:
            return denied
        body = seen.body
        if not isinstance(body, dict):
            return anthropic_error(400, "There was an error parsing the body of your request")
        if fault and fault.status:
            return anthropic_error(fault.status, fault.message, fault.error_type, fault.headers)
        if fault and fault.malformed:
            return Response(b'{"type": "message", "content": [', status=200, content_type="application/json")
        problem = anthropic.validate(body)
        if problem:
            return anthropic_error(400, problem)
        conv = anthropic.conversation(body)
        reply = plan_reply(conv, state.take_script(conv, body.get("model")))
        if body.get("stream"):
            return Response(anthropic.stream(state, seen, body, reply, fault), content_type="text/event-stream",
                            headers={"cache-control": "no-cache"})
        seen.usage = anthropic.usage_of(reply)
        seen.finished = time.monotonic()
        return _json(anthropic.message(body, reply))

    @app.post("/v1/messages/count_tokens")
    async def count_tokens() -> Response:
        seen, fault = await prelude()
        denied = anthropic_auth_error()
        if denied is not None:
            return denied
        if fault and fault.status:
            return anthropic_error(fault.status, fault.message, fault.error_type, fault.headers)
        if not isinstance(seen.body, dict) or not isinstance(seen.body.get("messages"), list):
            return anthropic_error(400, "messages: Field required")
        return _json(anthropic.count(seen.body))

    responses = openai_responses.ResponseStore()

    def openai_error(status: int, message: str, etype: str | None = None,
                     headers: dict[str, str] | None = None) -> Response:
        return Response(openai_chat.error_body(status, message, etype), status=status,
                        content_type="application/json", headers=headers)

    def openai_auth_error(azure: bool = False) -> Response | None:
        if state.api_key is None:
            return None
        if request.headers.get("authorization") == f"Bearer {state.api_key}":
            return None
        if azure and request.headers.get("api-key") == state.api_key:
            return None
        return openai_error(401, "Incorrect API key provided")

    @app.post("/v1/responses")
    @app.post("/openai/v1/responses")
    @app.post("/openai/responses")
    async def create_response() -> Response:
        seen, fault = await prelude()
        denied = openai_auth_error(azure=request.path.startswith("/openai/"))
        if denied is not None:
            return denied
        body = seen.body
        if not isinstance(body, dict) or not body.get("model") or "input" not in body:
            return openai_error(400, "'model' and 'input' are required")
        if fault and fault.status:
            return openai_error(fault.status, fault.message, fault.error_type, fault.headers)
        history: list[dict[str, Any]] = []
        if body.get("previous_response_id"):
            try:
                history = responses.history(body["previous_response_id"])
            except KeyError:
                return openai_error(404, f"Previous response with id '{body['previous_response_id']}' not found.")
        conv = openai_responses.conversation(body, history)
        reply = plan_reply(conv, state.take_script(conv, body["model"]))
        rid = openai_responses.new_id()
        final = openai_responses.response_object(body, reply, rid)
        if body.get("store", True):
            responses.put(final, [*history, *openai_responses.input_items(body)])
        if body.get("stream"):
            events = openai_responses.stream_events(body, reply, rid)
            return Response(openai_responses.stream(state, seen, events, final["usage"], fault),
                            content_type="text/event-stream", headers={"cache-control": "no-cache"})
        seen.usage = final["usage"]
        seen.finished = time.monotonic()
        return _json(final)

    @app.post("/v1/responses/input_tokens")
    async def response_input_tokens() -> Response:
        seen, fault = await prelude()
        denied = openai_auth_error()
        if denied is not None:
            return denied
        if fault and fault.status:
            return openai_error(fault.status, fault.message, fault.error_type, fault.headers)
        body = seen.body
        if not isinstance(body, dict) or not body.get("model"):
            return openai_error(400, "'model' is required")
        history: list[dict[str, Any]] = []
        if body.get("previous_response_id"):  # counted with the history it stands for, as OpenAI does
            try:
                history = responses.history(body["previous_response_id"])
            except KeyError:
                return openai_error(404, f"Previous response with id '{body['previous_response_id']}' not found.")
        conv = openai_responses.conversation(body, history)
        tools = sum(count_words(orjson.dumps(t).decode()) for t in body.get("tools") or [])
        return _json({"object": "response.input_tokens",
                      "input_tokens": sum(count_words(t) for t in conv.texts) + 3 * conv.messages + tools})

    @app.get("/v1/responses/<rid>")
    @app.get("/openai/v1/responses/<rid>")
    @app.get("/openai/responses/<rid>")
    async def get_response(rid: str) -> Response:
        entry = responses.get(rid)
        if entry is None:
            return openai_error(404, f"Response with id '{rid}' not found.")
        return _json(entry[0])

    @app.delete("/v1/responses/<rid>")
    @app.delete("/openai/v1/responses/<rid>")
    @app.delete("/openai/responses/<rid>")
    async def delete_response(rid: str) -> Response:
        if not responses.delete(rid):
            return openai_error(404, f"Response with id '{rid}' not found.")
        return _json({"id": rid, "object": "response", "deleted": True})

    @app.get("/v1/responses/<rid>/input_items")
    @app.get("/openai/v1/responses/<rid>/input_items")
    @app.get("/openai/responses/<rid>/input_items")
    async def response_input_items(rid: str) -> Response:
        entry = responses.get(rid)
        if entry is None:
            return openai_error(404, f"Response with id '{rid}' not found.")
        items = [{"id": f"item_{i}", **it} for i, it in enumerate(entry[1])]
        return _json({"object": "list", "data": items, "first_id": items[0]["id"] if items else None,
                      "last_id": items[-1]["id"] if items else None, "has_more": False})

    @app.get("/v1/models")
    async def models() -> Response:
        if request.headers.get("anthropic-version"):
            names = ["claude-mock-sonnet", "claude-mock-haiku"]
            return _json({"data": [{"type": "model", "id": n, "display_name": n, "created_at": "2025-01-01T00:00:00Z"}
                                   for n in names], "has_more": False, "first_id": names[0], "last_id": names[-1]})
        names = ["mock-gpt", "mock-gpt-mini"]
        return _json({"object": "list", "data": [
            {"id": n, "object": "model", "created": 1700000000, "owned_by": "trigate-mock"} for n in names]})

    @app.route("/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def unknown(rest: str) -> Response:
        # Recorded like any request, so tests can see exactly where a passthrough landed.
        await prelude()
        return openai_error(404, f"Invalid URL ({request.method} {request.path})")

    @app.post("/token")
    async def google_token() -> Response:
        """Google's OAuth token endpoint for the JWT-bearer grant: the assertion must be signed by
        the service account's key; the token minted is the mock's api_key."""
        form = await request.form
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return _json({"error": "unsupported_grant_type"}, 400)
        if state.google_public_key is None or not _valid_assertion(form.get("assertion", ""), state.google_public_key):
            return _json({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}, 400)
        state.google_tokens_issued += 1
        return _json({"access_token": state.api_key or "mock-token", "expires_in": state.google_token_ttl,
                      "token_type": "Bearer"})

    @app.post("/_mock/faults")
    async def add_fault() -> Response:
        try:
            fault = _converter.structure(orjson.loads(await request.get_data()), Fault)
        except Exception as exc:
            return _json({"error": str(exc)}, 400)
        state.add_fault(fault)
        return _json({"ok": True})

    @app.post("/_mock/script")
    async def add_script() -> Response:
        try:
            call = _converter.structure(orjson.loads(await request.get_data()), ScriptedCall)
        except Exception as exc:
            return _json({"error": str(exc)}, 400)
        state.add_script(call)
        return _json({"ok": True})

    @app.get("/_mock/requests")
    async def seen_requests() -> Response:
        return _json([{"path": r.path, "body": r.body, "usage": r.usage, "disconnected": r.disconnected}
                      for r in state.requests])

    @app.post("/_mock/reset")
    async def reset() -> Response:
        state.reset()
        return _json({"ok": True})

    bedrock_routes.register(app, state, credentials=state.aws_credentials)
    cloud_auth.register(app, state.cloud, lambda: state.api_key or "mock-token")
    gemini_routes.register(app, state)
    embeddings_routes.register(app, state)
    rerank_routes.register(app, state)
    realtime_routes.register(app, state)
    return app
