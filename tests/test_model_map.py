"""MODEL_MAP: explicit client model → upstream model overrides on every path."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from claude_code_proxy.config import ConfigError, Settings
from claude_code_proxy.models import map_model

BASE = {"OPENAI_API_KEY": "sk-test", "BIG_MODEL": "big", "SMALL_MODEL": "small"}


def settings(model_map: str) -> Settings:
    return Settings.from_env({**BASE, "MODEL_MAP": model_map})


def test_json_and_pair_forms_parse_the_same() -> None:
    as_json = settings('{"claude-opus-4-1": "gpt-4.1", "claude-3-5-haiku*": "tiny"}')
    as_pairs = settings("claude-opus-4-1=gpt-4.1, claude-3-5-haiku*=tiny")
    assert (
        as_json.model_map
        == as_pairs.model_map
        == {
            "claude-opus-4-1": "gpt-4.1",
            "claude-3-5-haiku*": "tiny",
        }
    )


@pytest.mark.parametrize("value", ['{"a": 1}', "[1]", "{bad", "no-equals-sign", "=x", "x="])
def test_malformed_map_is_a_config_error(value: str) -> None:
    with pytest.raises(ConfigError, match="MODEL_MAP"):
        settings(value)


def test_explicit_entries_win_over_family_mapping() -> None:
    s = settings("claude-opus-4-1=gpt-4.1,claude-3-5-haiku*=tiny,my-alias=qwen3-coder")
    assert map_model("claude-opus-4-1", s) == "gpt-4.1"
    assert map_model("claude-3-5-haiku-20241022", s) == "tiny"  # glob
    assert map_model("my-alias", s) == "qwen3-coder"
    assert map_model("claude-opus-5-5", s) == "big"  # not listed: family rule
    assert map_model("claude-haiku-5-5", s) == "small"


def test_map_applies_to_messages_count_tokens_and_models(
    proxy_factory: Any, mock_upstream: Any
) -> None:
    proxy = proxy_factory(MODEL_MAP="claude-sonnet-4-5-20250929=mapped-model")
    headers = {"x-api-key": "anything"}
    body = {
        "model": "claude-sonnet-4-5-20250929",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}],
    }
    with httpx.Client(base_url=proxy.base_url, headers=headers, timeout=10) as client:
        reply = client.post("/v1/messages", json=body)
        assert reply.status_code == 200
        assert reply.json()["model"] == "claude-sonnet-4-5-20250929"
        assert mock_upstream.last_request.json["model"] == "mapped-model"
        counted = client.post(
            "/v1/messages/count_tokens", json={"model": body["model"], "messages": body["messages"]}
        )
        assert counted.status_code == 200
        listed = client.get("/v1/models", params={"limit": 1000}).json()["data"]
    entry = next(e for e in listed if e["id"] == "claude-sonnet-4-5-20250929")
    assert "mapped-model" in entry["display_name"]
