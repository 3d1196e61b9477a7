"""OpenAI-compatible provider profiles: data files (``providers/*.toml``), not code.

A profile names the base URL, how to authenticate, the environment variable holding the key, and the
quirks of the server (parameters it rejects or names differently). A config provider with
``kind: <profile name>`` uses it; adding a provider of this kind is adding a file.
"""

from __future__ import annotations

import os
import tomllib
from functools import cache
from pathlib import Path

import cattrs
from attrs import define, field


@define(frozen=True)
class Quirks:
    drop_params: tuple[str, ...] = ()
    rename_params: dict[str, str] = field(factory=dict)


@define(frozen=True)
class Profile:
    name: str
    kind: str  # wire family: "openai"
    base_url: str
    api_key_env: str | None = None
    auth: str = "bearer"  # bearer | none | header:<name>
    responses: bool = False  # speaks the OpenAI Responses API natively
    embeddings: bool = True  # serves OpenAI-shaped /embeddings
    # Rerank dialect (cohere | jina | voyage | vllm) and its path under base_url, if it reranks.
    rerank: str | None = None
    rerank_path: str = "/rerank"
    headers: dict[str, str] = field(factory=dict)
    quirks: Quirks = field(factory=Quirks)


_converter = cattrs.Converter(forbid_extra_keys=True)


def profile_dirs() -> list[Path]:
    """Where profiles live: $TRIGATE_PROVIDERS_DIR (the operator's own, searched first), then those
    shipped inside the wheel, or the source tree's providers/ in a development checkout."""
    here = Path(__file__).resolve().parent.parent
    dirs = [here / "_providers", here.parent / "providers"]
    extra = os.environ.get("TRIGATE_PROVIDERS_DIR")
    if extra:
        dirs.insert(0, Path(extra))
    return [d for d in dirs if d.is_dir()]


@cache
def load_profiles() -> dict[str, Profile]:
    profiles: dict[str, Profile] = {}
    for d in profile_dirs():
        for f in sorted(d.glob("*.toml")):
            if f.stem in profiles:
                continue
            with f.open("rb") as fh:
                data = tomllib.load(fh)
            try:
                profiles[f.stem] = _converter.structure({"name": f.stem, **data}, Profile)
            except Exception as exc:
                raise ValueError(f"provider profile {f}: {exc}") from None
    return profiles
