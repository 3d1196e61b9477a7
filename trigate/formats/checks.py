"""Input checks shared by the format decoders: a 400 that names the field and says what was wrong."""

from __future__ import annotations

from typing import Any

from trigate.errors import GatewayError


def bad(param: str, problem: str) -> GatewayError:
    return GatewayError("invalid_request", f"{param}: {problem}", param=param)


def kind_name(v: Any) -> str:
    """A JSON type name for error messages."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def expect_str(v: Any, param: str) -> str:
    if not isinstance(v, str):
        raise bad(param, f"expected a string, got {kind_name(v)}")
    return v


def expect_dict(v: Any, param: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise bad(param, f"expected an object, got {kind_name(v)}")
    return v


def expect_list(v: Any, param: str) -> list[Any]:
    if not isinstance(v, list):
        raise bad(param, f"expected an array, got {kind_name(v)}")
    return v
