"""Runtime view of a configured provider: which wire format it speaks for each API type, the URL of
each call, body adjustments it needs, and how the gateway authenticates to it. Keys stay here;
nothing else formats them.

One class per provider family with its own URL scheme or auth; OpenAI-compatible servers are
``OpenAIProvider`` driven by a profile (providers/*.toml).
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote

from attrs import define, field

from trigate.config import Config, ConfigError, ProviderConfig
from trigate.errors import GatewayError
from trigate.upstream.profiles import Profile, Quirks, load_profiles

ANTHROPIC_VERSION = "2023-06-01"
VERTEX_ANTHROPIC_VERSION = "vertex-2023-10-16"


@define(frozen=True)
class Upstream:
    """One upstream call: the wire format, the URL, and the stream framing."""

    format: str
    url: str
    framing: str = "sse"  # sse | eventstream


def _ws(http_url: str) -> str:
    return "ws" + http_url.removeprefix("http")


def _unsupported(provider: str, api: str) -> GatewayError:
    return GatewayError("invalid_request", f"provider '{provider}' does not serve the {api} API", status=400)


@define
class Provider:
    name: str
    kind: str
    base_url: str
    api_key: str | None = field(default=None, repr=False)
    extra_headers: dict[str, str] = field(factory=dict, repr=False)
    auth: str = "bearer"
    quirks: Quirks = field(factory=Quirks)

    def upstream(self, api: str, model: str, stream: bool) -> Upstream:
        raise _unsupported(self.name, api)

    def realtime(self, model: str) -> Upstream:
        raise _unsupported(self.name, "realtime")

    def embeddings(self, model: str) -> Upstream:
        """Embeddings endpoint; format: openai | gemini | vertex | cohere | bedrock."""
        raise _unsupported(self.name, "embeddings")

    def rerank(self, model: str) -> Upstream:
        """Rerank endpoint; format: cohere | jina | voyage | vllm | bedrock | vertex."""
        raise _unsupported(self.name, "rerank")

    def count_tokens(self, model: str) -> Upstream | None:
        """The provider's exact input-token count endpoint for ``model`` (format: anthropic |
        gemini | bedrock | openai_responses), or None when only a local estimate is possible."""
        return None

    def count_tokens_body(self, fmt: str, body: dict[str, Any], model: str) -> dict[str, Any]:
        """The body for ``count_tokens(model)``, given the request encoded in ``fmt``."""
        body.pop("stream", None)
        body["model"] = model
        return body

    def models_list(self) -> Upstream | None:
        """Where the provider lists its own models (format: openai_models | anthropic_models |
        gemini_models), or None."""
        return None

    def origin(self) -> str:
        """scheme://host[:port] of the provider: the root passthrough paths are appended to."""
        scheme, _, rest = self.base_url.partition("://")
        return f"{scheme}://{rest.split('/', 1)[0]}"

    def stored_response_url(self, response_id: str, suffix: str = "") -> str:
        """URL of a response the provider stored itself (Responses API retrieve/delete/input_items)."""
        raise _unsupported(self.name, "responses")

    def adapt(self, fmt: str, body: dict[str, Any], model: str) -> dict[str, Any]:
        """Final body adjustments for this provider (quirks, fields the provider wants elsewhere)."""
        if self.quirks.drop_params or self.quirks.rename_params:
            for key in self.quirks.drop_params:
                body.pop(key, None)
            for old, new in self.quirks.rename_params.items():
                if old in body:
                    body[new] = body.pop(old)
        return body

    async def auth_headers(self, method: str, url: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
        """Headers authenticating one request (may sign the body or refresh a token)."""
        out = dict(self.extra_headers)
        if self.api_key and self.auth != "none":
            if self.auth == "api-key":
                out["api-key"] = self.api_key
            elif self.auth.startswith("header:"):
                out[self.auth.removeprefix("header:")] = self.api_key
            else:
                out["authorization"] = f"Bearer {self.api_key}"
        return out

    async def aclose(self) -> None:
        pass


@define
class OpenAIProvider(Provider):
    """OpenAI itself, the embedded mock, and every OpenAI-compatible profile."""

    responses: bool = True
    serves_embeddings: bool = True
    rerank_dialect: str | None = None
    rerank_path: str = "/rerank"

    def embeddings(self, model: str) -> Upstream:
        if not self.serves_embeddings:
            raise _unsupported(self.name, "embeddings")
        return Upstream("openai", self.base_url + "/embeddings")

    def rerank(self, model: str) -> Upstream:
        if self.rerank_dialect is None:
            raise _unsupported(self.name, "rerank")
        return Upstream(self.rerank_dialect, self.base_url + self.rerank_path)

    def upstream(self, api: str, model: str, stream: bool) -> Upstream:
        if api == "responses" and self.responses:
            return Upstream("openai_responses", self.base_url + "/responses")
        if api in ("chat", "messages", "responses"):
            return Upstream("openai_chat", self.base_url + "/chat/completions")
        raise _unsupported(self.name, api)

    def stored_response_url(self, response_id: str, suffix: str = "") -> str:
        return f"{self.base_url}/responses/{quote(response_id, safe='')}{suffix}"

    def models_list(self) -> Upstream | None:
        return Upstream("openai_models", self.base_url + "/models")

    def count_tokens(self, model: str) -> Upstream | None:
        # Only servers with the Responses API have /responses/input_tokens.
        return Upstream("openai_responses", self.base_url + "/responses/input_tokens") if self.responses else None

    def realtime(self, model: str) -> Upstream:
        """The Realtime WebSocket URL (ws/wss) for a model."""
        return Upstream("openai_realtime", f"{_ws(self.base_url)}/realtime?model={quote(model, safe='')}")


@define
class AzureProvider(Provider):
    """Azure OpenAI: the v1 API (``/openai/v1``, model = deployment in the body) or the dated
    deployments API (deployment in the path, ``api-version`` query)."""

    api_version: str | None = None

    def _url(self, model: str, op: str) -> str:
        if self.api_version:
            if op == "responses":
                return f"{self.base_url}/openai/responses?api-version={self.api_version}"
            return f"{self.base_url}/openai/deployments/{quote(model, safe='')}/{op}?api-version={self.api_version}"
        return f"{self.base_url}/openai/v1/{op}"

    def stored_response_url(self, response_id: str, suffix: str = "") -> str:
        path = f"responses/{quote(response_id, safe='')}{suffix}"
        if self.api_version:
            return f"{self.base_url}/openai/{path}?api-version={self.api_version}"
        return f"{self.base_url}/openai/v1/{path}"

    def embeddings(self, model: str) -> Upstream:
        return Upstream("openai", self._url(model, "embeddings"))

    def realtime(self, model: str) -> Upstream:
        if self.api_version:
            return Upstream("openai_realtime", f"{_ws(self.base_url)}/openai/realtime?api-version="
                            f"{self.api_version}&deployment={quote(model, safe='')}")
        return Upstream("openai_realtime", f"{_ws(self.base_url)}/openai/v1/realtime?model={quote(model, safe='')}")

    def upstream(self, api: str, model: str, stream: bool) -> Upstream:
        if api == "responses":
            return Upstream("openai_responses", self._url(model, "responses"))
        if api in ("chat", "messages"):
            return Upstream("openai_chat", self._url(model, "chat/completions"))
        raise _unsupported(self.name, api)


@define
class AnthropicProvider(Provider):
    def models_list(self) -> Upstream | None:
        return Upstream("anthropic_models", self.base_url + "/v1/models?limit=1000")

    def count_tokens(self, model: str) -> Upstream | None:
        return Upstream("anthropic", self.base_url + "/v1/messages/count_tokens")

    def upstream(self, api: str, model: str, stream: bool) -> Upstream:
        if api in ("chat", "messages", "responses"):
            return Upstream("anthropic", self.base_url + "/v1/messages")
        raise _unsupported(self.name, api)

    async def auth_headers(self, method: str, url: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
        out = dict(self.extra_headers)
        out["anthropic-version"] = headers.get("anthropic-version") or ANTHROPIC_VERSION
        if self.api_key:
            out["x-api-key"] = self.api_key
        return out


@define
class GeminiProvider(Provider):
    """Google AI Studio (Gemini Developer API), native generateContent."""

    def models_list(self) -> Upstream | None:
        return Upstream("gemini_models", self.base_url + "/v1beta/models?pageSize=1000")

    def count_tokens(self, model: str) -> Upstream | None:
        return Upstream("gemini", f"{self.base_url}/v1beta/models/{quote(model, safe='')}:countTokens")

    def embeddings(self, model: str) -> Upstream:
        return Upstream("gemini", f"{self.base_url}/v1beta/models/{quote(model, safe='')}:batchEmbedContents")

    def count_tokens_body(self, fmt: str, body: dict[str, Any], model: str) -> dict[str, Any]:
        # Only the generateContentRequest form counts the system instruction and tools too.
        return {"generateContentRequest": {"model": f"models/{model}", **body}}

    def upstream(self, api: str, model: str, stream: bool) -> Upstream:
        if api in ("chat", "messages", "responses"):
            base = f"{self.base_url}/v1beta/models/{quote(model, safe='')}"
            return Upstream("gemini", base + (":streamGenerateContent?alt=sse" if stream else ":generateContent"))
        raise _unsupported(self.name, api)

    def adapt(self, fmt: str, body: dict[str, Any], model: str) -> dict[str, Any]:
        return body

    async def auth_headers(self, method: str, url: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
        out = dict(self.extra_headers)
        if self.api_key:
            out["x-goog-api-key"] = self.api_key
        return out


@define
class VertexProvider(Provider):
    """Vertex AI: Gemini models (generateContent) and Claude models (rawPredict, Anthropic format)."""

    project: str = ""
    location: str = ""
    tokens: Any = None  # trigate.upstream.google_auth.TokenSource

    def _model_url(self, publisher: str, model: str, method: str) -> str:
        return (
            f"{self.base_url}/v1/projects/{self.project}/locations/{self.location}/publishers/{publisher}"
            f"/models/{quote(model, safe='@')}:{method}"
        )

    # Vertex AI ranking lives on the Discovery Engine host (overridable with base_url for tests).
    ranking_base_url: str = "https://discoveryengine.googleapis.com"

    def embeddings(self, model: str) -> Upstream:
        return Upstream("vertex", self._model_url("google", model, "predict"))

    def rerank(self, model: str) -> Upstream:
        return Upstream("vertex", f"{self.ranking_base_url}/v1/projects/{self.project}/locations/global"
                        "/rankingConfigs/default_ranking_config:rank")

    def count_tokens(self, model: str) -> Upstream | None:
        if model.startswith("claude"):
            # Vertex's Claude token counter is a pseudo-model taking the real model in the body.
            return Upstream("anthropic", self._model_url("anthropic", "count-tokens", "rawPredict"))
        return Upstream("gemini", self._model_url("google", model, "countTokens"))

    def upstream(self, api: str, model: str, stream: bool) -> Upstream:
        if api not in ("chat", "messages", "responses"):
            raise _unsupported(self.name, api)
        if model.startswith("claude"):
            return Upstream(
                "anthropic", self._model_url("anthropic", model, "streamRawPredict" if stream else "rawPredict")
            )
        return Upstream(
            "gemini", self._model_url("google", model, "streamGenerateContent?alt=sse" if stream else "generateContent")
        )

    def count_tokens_body(self, fmt: str, body: dict[str, Any], model: str) -> dict[str, Any]:
        body.pop("stream", None)
        if fmt == "anthropic":
            body["model"] = model
            body["anthropic_version"] = VERTEX_ANTHROPIC_VERSION
            for key in ("max_tokens", "stop_sequences", "temperature", "top_p", "top_k"):
                body.pop(key, None)
        else:
            body.pop("generationConfig", None)
        return body

    def adapt(self, fmt: str, body: dict[str, Any], model: str) -> dict[str, Any]:
        if fmt == "anthropic":
            # Vertex takes the model from the URL and the API version from the body.
            body.pop("model", None)
            body["anthropic_version"] = VERTEX_ANTHROPIC_VERSION
        return body

    async def auth_headers(self, method: str, url: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
        out = dict(self.extra_headers)
        out["authorization"] = f"Bearer {await self.tokens.token()}"
        return out

    async def aclose(self) -> None:
        if self.tokens is not None:
            await self.tokens.aclose()


@define
class BedrockProvider(Provider):
    """Amazon Bedrock Runtime, Converse/ConverseStream; SigV4 or a Bedrock API key (bearer)."""

    region: str = ""
    credentials: Any = field(default=None, repr=False)  # trigate.upstream.aws_credentials.AwsCredentialSource

    def upstream(self, api: str, model: str, stream: bool) -> Upstream:
        if api in ("chat", "messages", "responses"):
            # The model id is one path segment: ':' and '/' (ARNs) must be percent-encoded.
            base = f"{self.base_url}/model/{quote(model, safe='')}"
            if stream:
                return Upstream("bedrock", base + "/converse-stream", framing="eventstream")
            return Upstream("bedrock", base + "/converse")
        raise _unsupported(self.name, api)

    # Rerank is on the bedrock-agent-runtime host (overridable with base_url for tests).
    agent_base_url: str = ""

    def count_tokens(self, model: str) -> Upstream | None:
        return Upstream("bedrock", f"{self.base_url}/model/{quote(model, safe='')}/count-tokens")

    def embeddings(self, model: str) -> Upstream:
        return Upstream("bedrock", f"{self.base_url}/model/{quote(model, safe='')}/invoke")

    def rerank(self, model: str) -> Upstream:
        return Upstream("bedrock", f"{self.agent_base_url}/rerank")

    def count_tokens_body(self, fmt: str, body: dict[str, Any], model: str) -> dict[str, Any]:
        converse = {k: v for k, v in body.items() if k in ("messages", "system", "toolConfig",
                                                          "additionalModelRequestFields")}
        return {"input": {"converse": converse}}

    def adapt(self, fmt: str, body: dict[str, Any], model: str) -> dict[str, Any]:
        return body

    async def auth_headers(self, method: str, url: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
        out = dict(self.extra_headers)
        if self.api_key:
            out["authorization"] = f"Bearer {self.api_key}"
            return out
        from trigate.upstream.sigv4 import sign_request

        creds = await self.credentials.get()
        signed = sign_request(
            method,
            url,
            {**headers, **out},
            body,
            access_key=creds.access_key,
            secret_key=creds.secret_key,
            session_token=creds.token,
            region=self.region,
        )
        out.update(signed)
        return out


@define
class CohereProvider(Provider):
    """Cohere: embeddings and rerank (its chat API is not routed through the text pipeline)."""

    def embeddings(self, model: str) -> Upstream:
        return Upstream("cohere", self.base_url + "/v2/embed")

    def rerank(self, model: str) -> Upstream:
        return Upstream("cohere", self.base_url + "/v2/rerank")


def build_providers(config: Config, mock_urls: dict[str, str]) -> dict[str, Provider]:
    """The one way providers are made from a config: at serve start, on reload and by ``trigate check``
    (``check_providers``), so a config that passes check cannot fail here. ``mock_urls`` maps mock
    provider names to the base URL of their running embedded mock. Raises ConfigError naming the field
    of every provider that cannot be built; building holds no resources, so a refused config leaves
    nothing to close."""
    providers: dict[str, Provider] = {}
    problems: list[str] = []
    for name, pc in config.providers.items():
        try:
            providers[name] = make_provider(name, pc, mock_urls.get(name))
        except ConfigError as exc:
            problems += exc.problems
    if problems:
        raise ConfigError(problems)
    return providers


# Stands in for an embedded mock's address when nothing runs (check): only its presence matters.
_NOT_STARTED_MOCK = "http://127.0.0.1:0"


def check_providers(config: Config) -> None:
    """Build every provider exactly as serving would, without starting anything; raises ConfigError."""
    build_providers(config, {name: _NOT_STARTED_MOCK for name, pc in config.providers.items() if pc.kind == "mock"})


def _base(pc: ProviderConfig, default: str) -> str:
    return (pc.base_url or default).rstrip("/")


def make_provider(name: str, pc: ProviderConfig, mock_url: str | None = None) -> Provider:
    common: dict[str, Any] = {"name": name, "kind": pc.kind, "api_key": pc.api_key, "extra_headers": dict(pc.headers)}
    kind = pc.kind
    if kind == "mock":
        base = pc.base_url or mock_url
        if base is None:
            # Embedded mocks start with the gateway only, so one added by a reload has none.
            raise ConfigError([f"providers.{name}: no embedded mock is running for it (they start with the "
                               "gateway: restart, or give base_url)"])
        base = base.rstrip("/")
        return OpenAIProvider(base_url=base if base.endswith("/v1") else base + "/v1", **common)
    if kind == "openai":
        return OpenAIProvider(base_url=_base(pc, "https://api.openai.com/v1"), auth=pc.auth or "bearer", **common)
    if kind == "azure":
        base = _base(pc, "").removesuffix("/openai/v1").removesuffix("/openai")
        return AzureProvider(base_url=base, auth=pc.auth or "api-key", api_version=pc.api_version, **common)
    if kind == "anthropic":
        # Anthropic convention: the base URL has no /v1.
        return AnthropicProvider(base_url=_base(pc, "https://api.anthropic.com").removesuffix("/v1"), **common)
    if kind == "gemini":
        return GeminiProvider(base_url=_base(pc, "https://generativelanguage.googleapis.com"), **common)
    if kind == "vertex":
        from trigate.upstream.google_auth import token_source

        try:
            tokens = token_source(pc)
        except ValueError as exc:
            where = "credentials_file" if pc.credentials_file else "application default credentials"
            raise ConfigError([f"providers.{name}.{where}: {exc}"]) from None
        location = pc.region or "global"
        host = "aiplatform.googleapis.com" if location == "global" else f"{location}-aiplatform.googleapis.com"
        return VertexProvider(
            base_url=_base(pc, f"https://{host}"),
            project=pc.project or "",
            location=location,
            tokens=tokens,
            ranking_base_url=_base(pc, "https://discoveryengine.googleapis.com"),
            **common,
        )
    if kind == "bedrock":
        from trigate.upstream.aws_credentials import credential_source

        region = pc.region or "us-east-1"
        return BedrockProvider(
            base_url=_base(pc, f"https://bedrock-runtime.{region}.amazonaws.com"),
            agent_base_url=_base(pc, f"https://bedrock-agent-runtime.{region}.amazonaws.com"),
            region=region,
            # The AWS_* variables are the first link of botocore's chain: no need to read them here.
            credentials=credential_source(provider=name, region=region, access_key=pc.aws_access_key_id,
                                          secret_key=pc.aws_secret_access_key, session_token=pc.aws_session_token,
                                          profile=pc.profile, role_arn=pc.role_arn),
            **{**common, "api_key": pc.api_key or os.environ.get("AWS_BEARER_TOKEN_BEDROCK")},
        )
    if kind == "cohere":
        return CohereProvider(base_url=_base(pc, "https://api.cohere.com"), **common)
    profile = load_profiles()[kind]
    return profile_provider(name, pc, profile, common)


def profile_provider(name: str, pc: ProviderConfig, profile: Profile, common: dict[str, Any]) -> Provider:
    key = pc.api_key or (os.environ.get(profile.api_key_env) if profile.api_key_env else None)
    return OpenAIProvider(
        base_url=_base(pc, profile.base_url),
        auth=pc.auth or profile.auth,
        quirks=profile.quirks,
        responses=profile.responses,
        serves_embeddings=profile.embeddings,
        rerank_dialect=profile.rerank,
        rerank_path=profile.rerank_path,
        **{**common, "api_key": key, "extra_headers": {**profile.headers, **common["extra_headers"]}},
    )
