"""The embedded default lists the models it serves, so `client.models.list()` is useful out of the box."""

from __future__ import annotations

import anthropic
import attrs
import openai

from tests.harness import Servers
from trigate.config import Listen, default_config


def test_models_list_on_the_embedded_default_names_the_mock_models() -> None:
    # the embedded default, on a free port rather than its usual 4000
    with Servers(lambda _mock_url: attrs.evolve(default_config({}), listen=Listen(port=0))) as s:
        oa = openai.OpenAI(base_url=s.url + "/v1", api_key="unused-in-open-mode", max_retries=0)
        ids = [m.id for m in oa.models.list()]
        assert ids == ["mock-gpt", "mock-gpt-mini"]
        # Every listed model is one the gateway really serves.
        for model in ids:
            reply = oa.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
            assert reply.choices[0].message.content
        an = anthropic.Anthropic(base_url=s.url, api_key="unused-in-open-mode", max_retries=0)
        assert [m.id for m in an.models.list()] == ids
