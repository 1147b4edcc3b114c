"""The configuration file: every error names the file, the table and the key (and line)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from claude_code_proxy.config import ConfigError, Settings
from claude_code_proxy.config_file import (
    CONFIG_ENV,
    IMPLICIT_PROVIDER,
    config_path,
    gateway_of,
    implicit_gateway,
    load_for,
    load_gateway,
)
from claude_code_proxy.gateway.router import RequestFacts, Target, route

ENV = {"OPENAI_API_KEY": "sk-openai-1", "OR_1": "sk-or-1", "OR_2": "sk-or-2"}

GOOD = """
[providers.openai]
base_url = "https://api.openai.com/v1"
api_key_env = "OPENAI_API_KEY"

[providers.local]
base_url = "http://localhost:11434"
api_key = "ollama"
timeout = 120
max_concurrency = 2
api = "chat"
headers = { "x-team" = "core" }
profile = { think_tags = false }

[providers.openrouter]
base_url = "https://openrouter.ai/api/v1"
api_keys_env = ["OR_1", "OR_2"]

[providers.azure]
base_url = "https://res.openai.azure.com/openai/deployments/gpt4o?api-version=2024-10-21"
api_key = "az"

[routes]
opus = ["openai/gpt-5", "openrouter/openai/gpt-5"]
sonnet = "openai/gpt-4.1"
haiku = "local/qwen3-coder:30b"
default = "openai/gpt-4.1"
long_context = { above_tokens = 60000, target = "openrouter/google/gemini-2.5-pro" }
image = "openai/gpt-4.1"
web_search = "openai/gpt-4.1"

[models]
"claude-opus-4-1*" = "openai/o3"
"my-alias" = ["local/qwen3-coder:30b", "openai/gpt-4.1-mini"]

[context_windows]
"local/qwen3-coder:30b" = 32768

[web_search]
backend = "searxng"
url = "http://localhost:8888"
max_results = 8
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "claude-code-proxy.toml"
    path.write_text(textwrap.dedent(text))
    return path


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return load_gateway(write(tmp_path, text), ENV if env is None else env, Settings())


def test_a_complete_file_loads(tmp_path: Path) -> None:
    gateway = load(tmp_path, GOOD)
    assert [p.name for p in gateway.providers] == ["openai", "local", "openrouter", "azure"]
    openai, local, openrouter, azure = gateway.providers
    assert openai.api_keys == ("sk-openai-1",) and openai.api == "auto"
    assert local.base_url == "http://localhost:11434/v1"
    assert (local.timeout, local.max_concurrency, local.api) == (120.0, 2, "chat")
    assert local.headers == {"x-team": "core"} and local.profile == {"think_tags": False}
    assert openrouter.api_keys == ("sk-or-1", "sk-or-2")
    assert azure.azure_api_version == "2024-10-21" and "deployments/gpt4o" in azure.base_url
    routing = gateway.routing
    assert [str(t) for t in routing.opus] == ["openai/gpt-5", "openrouter/openai/gpt-5"]
    assert routing.long_context is not None and routing.long_context.above_tokens == 60000
    assert gateway.context_window(Target("local", "qwen3-coder:30b")) == 32768
    assert gateway.web_search is not None
    assert (gateway.web_search.backend, gateway.web_search.max_results) == ("searxng", 8)
    assert gateway.has_own_keys and not gateway.has_dynamic
    assert route(routing, RequestFacts("my-alias")).rule == "models:my-alias"


def test_a_provider_without_key_forwards_the_clients(tmp_path: Path) -> None:
    gateway = load(
        tmp_path,
        """
        [providers.mine]
        base_url = "http://127.0.0.1:9/v1"
        [routes]
        default = "mine/m"
        """,
    )
    assert gateway.providers[0].dynamic and gateway.has_dynamic and not gateway.has_own_keys


def assert_error(tmp_path: Path, text: str, *parts: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, env)
    message = str(info.value)
    assert str(tmp_path / "claude-code-proxy.toml") in message
    for part in parts:
        assert part in message, message
    return message


BASE = """
[providers.openai]
base_url = "https://api.openai.com/v1"
api_key = "k"
"""


def test_unknown_provider_in_a_route(tmp_path: Path) -> None:
    assert_error(
        tmp_path,
        BASE + '[routes]\nopus = "opnai/gpt-5"\n',
        "[routes]",
        "'opus'",
        "line 6",
        "unknown provider 'opnai'",
    )


def test_missing_key_variable(tmp_path: Path) -> None:
    assert_error(
        tmp_path,
        '[providers.openai]\nbase_url = "https://api.openai.com/v1"\n'
        'api_key_env = "NOPE_KEY"\n[routes]\ndefault = "openai/x"\n',
        "[providers.openai]",
        "'api_key_env'",
        "line 3",
        "NOPE_KEY is not set",
    )


def test_missing_variable_in_a_pool(tmp_path: Path) -> None:
    assert_error(
        tmp_path,
        '[providers.p]\nbase_url = "https://x.example/v1"\napi_keys_env = ["OR_1", "GONE"]\n'
        '[routes]\ndefault = "p/x"\n',
        "[providers.p]",
        "'api_keys_env'",
        "GONE is not set",
    )


def test_malformed_target(tmp_path: Path) -> None:
    assert_error(
        tmp_path, BASE + '[routes]\nsonnet = "gpt-4.1"\n', "[routes]", "'sonnet'", "provider/model"
    )


def test_malformed_target_in_models(tmp_path: Path) -> None:
    assert_error(
        tmp_path,
        BASE + '[routes]\ndefault = "openai/x"\n[models]\n"my-alias" = ["openai/x", 3]\n',
        "[models]",
        "'my-alias'",
        "line 8",
    )


def test_unknown_key_in_a_provider(tmp_path: Path) -> None:
    message = assert_error(
        tmp_path,
        BASE + 'api_kye = "x"\n[routes]\ndefault = "openai/x"\n',
        "[providers.openai]",
        "'api_kye'",
        "line 5",
        "unknown key",
    )
    assert "base_url" in message  # the known keys are listed


def test_unknown_route_and_top_level_table(tmp_path: Path) -> None:
    assert_error(tmp_path, BASE + '[routes]\nhaiku4 = "openai/x"\n', "[routes]", "'haiku4'")
    assert_error(tmp_path, BASE + '[route]\ndefault = "openai/x"\n', "top level", "'route'")


def test_unknown_key_in_long_context(tmp_path: Path) -> None:
    assert_error(
        tmp_path,
        BASE + '[routes]\ndefault = "openai/x"\n'
        'long_context = { above = 5, target = "openai/y" }\n',
        "[routes.long_context]",
        "'above'",
        "line 7",
    )


def test_toml_syntax_error_gives_the_parsers_line(tmp_path: Path) -> None:
    assert_error(tmp_path, BASE + "[routes\n", "not valid TOML", "line 5")


def test_base_url_problems(tmp_path: Path) -> None:
    assert_error(
        tmp_path,
        '[providers.a]\nbase_url = "ftp://x"\n[routes]\ndefault = "a/x"\n',
        "[providers.a]",
        "'base_url'",
        "line 2",
        "not an http(s) URL",
    )
    assert_error(
        tmp_path,
        '[providers.a]\napi_key = "k"\n[routes]\ndefault = "a/x"\n',
        "[providers.a]",
        "'base_url'",
        "is required",
    )


def test_bad_values(tmp_path: Path) -> None:
    assert_error(tmp_path, BASE + 'api = "soap"\n', "[providers.openai]", "'api'", "chat")
    assert_error(tmp_path, BASE + "timeout = 0\n", "'timeout'", "greater than 0")
    assert_error(tmp_path, BASE + "max_concurrency = 0\n", "'max_concurrency'", "at least 1")
    assert_error(tmp_path, BASE + 'api_key_env = "X"\n', "'api_key_env'", "only one of")
    assert_error(
        tmp_path, BASE + 'headers = { authorization = "x" }\n', "'headers'", "set by the proxy"
    )
    assert_error(
        tmp_path, BASE + "profile = { no_such = 1 }\n", "'profile'", "unknown profile setting"
    )


def test_routes_need_somewhere_for_claude_ids(tmp_path: Path) -> None:
    assert_error(tmp_path, BASE, "[routes]", "'default'", "is required")
    assert_error(tmp_path, BASE + '[routes]\nimage = "openai/x"\n', "'default'", "is required")


def test_default_falls_back_to_a_tier(tmp_path: Path) -> None:
    gateway = load(tmp_path, BASE + '[routes]\nsonnet = "openai/s"\n')
    assert [str(t) for t in gateway.routing.default] == ["openai/s"]


def test_context_windows_and_web_search_errors(tmp_path: Path) -> None:
    routes = '[routes]\ndefault = "openai/x"\n'
    assert_error(
        tmp_path,
        BASE + routes + '[context_windows]\n"openai/x" = "big"\n',
        "[context_windows]",
        "'openai/x'",
        "number of tokens",
    )
    assert_error(
        tmp_path,
        BASE + routes + '[context_windows]\n"other/x" = 5\n',
        "[context_windows]",
        "unknown provider",
    )
    assert_error(
        tmp_path, BASE + routes + "[web_search]\nurl = 'http://x'\n", "[web_search]", "'backend'"
    )
    assert_error(
        tmp_path,
        BASE + routes + '[web_search]\nbackend = "brave"\napi_key_env = "NO_SUCH"\n',
        "[web_search]",
        "'api_key_env'",
        "NO_SUCH",
    )
    assert_error(
        tmp_path,
        BASE + routes + '[web_search]\nbackend = "brave"\nmax_results = 500\n',
        "'max_results'",
    )
    assert_error(
        tmp_path,
        BASE + routes + '[web_search]\nbackend = "bing"\n',
        "[web_search]",
        "'backend'",
        "must be one of",
    )
    assert_error(
        tmp_path,
        BASE + routes + '[web_search]\nbackend = "brave"\n',
        "[web_search]",
        "'api_key'",
    )


def test_config_path_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = write(tmp_path, GOOD)
    other = tmp_path / "other.toml"
    other.write_text(GOOD)
    monkeypatch.chdir(tmp_path)
    assert config_path({}, str(other)) == other
    assert config_path({CONFIG_ENV: str(other)}) == other
    assert config_path({}) == Path("claude-code-proxy.toml")
    explicit.unlink()
    assert config_path({}) is None
    with pytest.raises(ConfigError, match=r"--config=.*no such file"):
        config_path({}, str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match=rf"{CONFIG_ENV}=.*no such file"):
        config_path({CONFIG_ENV: str(tmp_path / "missing.toml")})


def test_load_for_puts_the_file_on_the_settings(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    settings = load_for(Settings(), {**ENV, CONFIG_ENV: str(path)})
    assert settings.gateway is not None and settings.gateway.path == str(path)
    assert settings.web_search.backend == "searxng"
    assert settings.web_search.url == "http://localhost:8888"
    assert settings.web_search.max_results == 8
    assert gateway_of(settings) is settings.gateway


def test_environment_only_is_one_provider_with_the_same_routes() -> None:
    settings = Settings.from_env(
        {
            "OPENAI_API_KEY": "sk-x",
            "OPENAI_BASE_URL": "http://localhost:11434",
            "BIG_MODEL": "big",
            "MIDDLE_MODEL": "mid",
            "SMALL_MODEL": "small",
            "MODEL_MAP": "my-alias=other,claude-3*=old",
            "CUSTOM_HEADER_X_TEAM": "core",
        }
    )
    gateway = implicit_gateway(settings)
    assert gateway_of(settings) == gateway
    (provider,) = gateway.providers
    assert provider.name == IMPLICIT_PROVIDER
    assert provider.base_url == "http://localhost:11434/v1"
    assert provider.api_keys == ("sk-x",) and provider.headers == {"x-team": "core"}
    assert provider.api == "auto"

    def upstream(model: str) -> tuple[str, str]:
        decision = route(gateway.routing, RequestFacts(model))
        return decision.first.model, decision.rule

    assert upstream("claude-opus-4-5") == ("big", "opus")
    assert upstream("claude-sonnet-4-5") == ("mid", "sonnet")
    assert upstream("claude-haiku-4-5") == ("small", "haiku")
    assert upstream("claude-2") == ("big", "default")
    assert upstream("my-alias") == ("other", "models:my-alias")
    assert upstream("claude-3-haiku") == ("old", "models:claude-3*")
    assert upstream("upstream/gpt-4") == ("upstream/gpt-4", "passthrough")
    assert upstream("gpt-4.1") == ("gpt-4.1", "passthrough")


def test_variables_a_file_replaces_are_named_once_at_load(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, BASE + '[routes]\ndefault = "openai/x"\n')
    with caplog.at_level("WARNING", logger="claude_code_proxy.config_file"):
        load_for(Settings(), {CONFIG_ENV: str(path), "BIG_MODEL": "b", "OPENAI_API_KEY": "k"})
    assert "BIG_MODEL is not used" in caplog.text and "OPENAI_API_KEY" not in caplog.text


def test_client_keys_for_key_less_local_providers_need_no_sk_prefix(tmp_path: Path) -> None:
    from claude_code_proxy.auth import upstream_key
    from claude_code_proxy.translate.errors import ProxyError

    local = (
        '[providers.local]\nbase_url = "http://localhost:11434"\n[routes]\ndefault = "local/m"\n'
    )
    settings = load_for(Settings(), {CONFIG_ENV: str(write(tmp_path, local))})
    assert upstream_key({"x-api-key": "ollama"}, settings) == "ollama"
    hosted = '[providers.h]\nbase_url = "https://api.example.com/v1"\n[routes]\ndefault = "h/m"\n'
    settings = load_for(Settings(), {CONFIG_ENV: str(write(tmp_path, hosted))})
    with pytest.raises(ProxyError):
        upstream_key({"x-api-key": "ollama"}, settings)
    assert upstream_key({"x-api-key": "sk-user-key"}, settings) == "sk-user-key"


VISION = """
[providers.openai]
base_url = "https://api.openai.com/v1"
api_key = "k"

[providers.local]
base_url = "http://localhost:11434"
api_key = "ollama"

[providers.lab]
base_url = "http://127.0.0.1:9/v1"
profile = { vision = false }

[routes]
opus = "openai/gpt-4.1"
sonnet = "openai/gpt-5"
haiku = "local/qwen3-coder:30b"
default = "local/gemma3:27b"
image = "lab/gpt-4o"
web_search = "local/llava:13b"
"""


def test_vision_from_profiles_and_the_vision_table(tmp_path: Path) -> None:
    gateway = load(tmp_path, VISION)
    known = {str(k): v for k, v in gateway.vision.items()}
    # Built-in model rules; the provider's profile beats them (lab/gpt-4o); unknown: absent.
    assert known == {
        "openai/gpt-4.1": True,
        "openai/gpt-5": True,
        "local/qwen3-coder:30b": False,
        "lab/gpt-4o": False,
        "local/llava:13b": True,
    }
    assert {str(t) for t in gateway.routing.vision} == {
        "openai/gpt-4.1",
        "openai/gpt-5",
        "local/llava:13b",
    }
    table = '[vision]\n"openai/gpt-4.1" = false\n"local/gemma3:27b" = true\n'
    gateway = load(tmp_path, VISION + table)
    assert gateway.vision[Target("openai", "gpt-4.1")] is False
    assert gateway.vision[Target("local", "gemma3:27b")] is True
    routing = gateway.routing
    assert route(routing, RequestFacts("claude-opus-4-5", has_image=True)).rule == "image"
    assert route(routing, RequestFacts("claude-sonnet-4-5", has_image=True)).rule == "sonnet"
    assert route(routing, RequestFacts("claude-3-x", has_image=True)).rule == "default"


def test_vision_errors_name_the_table_and_key(tmp_path: Path) -> None:
    routes = '[routes]\ndefault = "openai/x"\n'
    assert_error(
        tmp_path,
        BASE + routes + '[vision]\n"openai/x" = "yes"\n',
        "[vision]",
        "'openai/x'",
        "true (reads images) or false",
    )
    assert_error(tmp_path, BASE + routes + '[vision]\n"other/x" = true\n', "unknown provider")
    assert_error(
        tmp_path,
        BASE.replace('api_key = "k"', 'api_key = "k"\nprofile = { vision = "no" }') + routes,
        "[providers.openai]",
        "vision must be true or false",
    )
