"""OpenAI-compatible providers are data: a new one is a profile file, with no code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import openai
import yaml

from tests.harness import UPSTREAM_KEY, Servers, free_loopback_port, openai_config, wait_healthy


def test_a_new_provider_from_a_profile_file_alone(tmp_path: Path) -> None:
    with Servers(openai_config, mock_key=UPSTREAM_KEY) as s:
        profiles = tmp_path / "profiles"
        profiles.mkdir()
        (profiles / "acme.toml").write_text(
            "# ACME Inference: an OpenAI-compatible server\n"
            'kind = "openai"\n'
            f'base_url = "{s.mock_url}/v1"\n'
            'api_key_env = "ACME_API_KEY"\n'
            'auth = "bearer"\n'
            "[quirks]\n"
            'drop_params = ["logit_bias"]\n'
            'rename_params = { max_completion_tokens = "max_tokens" }\n')
        port = free_loopback_port()
        cfg = {"auth": {"open": True}, "listen": {"host": "127.0.0.1", "port": port},
               "store": {"responses_path": ":memory:"},
               "providers": {"acme": {"kind": "acme"}}, "models": [{"name": "acme/*", "provider": "acme"}]}
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
        env = {**os.environ, "TRIGATE_PROVIDERS_DIR": str(profiles), "ACME_API_KEY": UPSTREAM_KEY}
        check = subprocess.run([sys.executable, "-m", "trigate.cli", "check", str(tmp_path / "c.yaml")], env=env,
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        proc = subprocess.Popen([sys.executable, "-m", "trigate.cli", "serve", "--config", str(tmp_path / "c.yaml")],
                                env=env, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_healthy(proc, url, 20)
            client = openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0)
            r = client.chat.completions.create(model="acme/acme-large", messages=[{"role": "user", "content": "hi"}],
                                               max_completion_tokens=50, logit_bias={"50256": -100})
            assert r.choices[0].message.content
            sent = s.mock.requests[-1]
            assert sent.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"  # key from the profile's env var
            assert sent.body["model"] == "acme-large"
            assert "logit_bias" not in sent.body  # quirks applied
            assert sent.body["max_tokens"] == 50 and "max_completion_tokens" not in sent.body
        finally:
            proc.terminate()
            proc.wait(10)
