"""The config examples in the README are real: each parses and validates."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from trigate.config import parse_config

README = Path(__file__).resolve().parents[2] / "README.md"
ENV = {name: "x" for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "AZURE_OPENAI_KEY",
                              "TEAM_A_KEY", "TRIGATE_ADMIN_KEY")}


def yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", README.read_text(), re.S)


def test_the_readme_has_config_examples() -> None:
    assert len(yaml_blocks()) >= 3


def test_every_readme_config_example_is_valid(tmp_path: Path) -> None:
    for block in yaml_blocks():
        data = yaml.safe_load(block)
        # the examples are fragments of one file; the main one refers to a service-account file
        data.setdefault("auth", {}).setdefault("open", True)
        for p in (data.get("providers") or {}).values():
            if p.get("credentials_file"):
                p["credentials_file"] = str(tmp_path / "sa.json")
        parse_config(data, env=ENV)
