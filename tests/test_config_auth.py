"""Settings from the environment, upstream URLs and headers, client auth, model mapping.

References: protocol.md A.2, B.1, C.1 (Azure), C.6 (OpenRouter), C.7 (Gemini), F.17, and the
brief's configuration rules (MIDDLE defaults to BIG, port 8082, loopback by default, …).
"""

from __future__ import annotations

from typing import Any

import pytest
from starlette.datastructures import Headers

from claude_code_proxy.auth import client_key, upstream_key
from claude_code_proxy.config import ConfigError, Settings, normalize_base_url
from claude_code_proxy.gateway.upstream import Upstream
from claude_code_proxy.models import map_model
from claude_code_proxy.translate.errors import ProxyError

STATIC = {"OPENAI_API_KEY": "sk-upstream"}


def settings(**env: str) -> Settings:
    return Settings.from_env(env)


# ------------------------------------------------------------------------------------------
# defaults
# ------------------------------------------------------------------------------------------


def test_defaults() -> None:
    s = settings()
    assert s.port == 8082
    assert s.host == "127.0.0.1"
    assert s.log_level == "WARNING"
    assert s.max_tokens_limit is None
    assert s.openai_base_url == "https://api.openai.com/v1"
    assert s.openai_api_key is None
    assert s.anthropic_api_key is None
    assert s.azure_api_version is None
    assert s.custom_headers == {}
    assert s.allow_unauthenticated is False
    assert s.big_model
    assert s.small_model
    assert s.middle_model == s.big_model


def test_middle_model_defaults_to_big_model() -> None:
    s = settings(BIG_MODEL="qwen3-coder:480b", SMALL_MODEL="qwen3:8b")
    assert s.big_model == "qwen3-coder:480b"
    assert s.middle_model == "qwen3-coder:480b"
    assert s.small_model == "qwen3:8b"


def test_middle_model_can_be_set() -> None:
    s = settings(BIG_MODEL="big", MIDDLE_MODEL="mid", SMALL_MODEL="small")
    assert (s.big_model, s.middle_model, s.small_model) == ("big", "mid", "small")


def test_blank_values_count_as_unset() -> None:
    s = settings(MIDDLE_MODEL="  ", BIG_MODEL="big", PORT="", LOG_LEVEL=" ", MAX_TOKENS_LIMIT="")
    assert s.middle_model == "big"
    assert s.port == 8082
    assert s.log_level == "WARNING"
    assert s.max_tokens_limit is None


def test_values_are_read() -> None:
    s = settings(
        OPENAI_API_KEY="sk-x",
        ANTHROPIC_API_KEY="proxy-secret",
        HOST="0.0.0.0",
        PORT="9000",
        LOG_LEVEL="debug",
        MAX_TOKENS_LIMIT="16384",
        REQUEST_TIMEOUT="90",
        CONNECT_TIMEOUT="2.5",
    )
    assert s.openai_api_key == "sk-x"
    assert s.anthropic_api_key == "proxy-secret"
    assert s.host == "0.0.0.0"
    assert s.port == 9000
    assert s.log_level == "DEBUG"
    assert s.max_tokens_limit == 16384
    assert s.request_timeout == 90
    assert s.connect_timeout == 2.5


def test_warn_is_warning() -> None:
    assert settings(LOG_LEVEL="warn").log_level == "WARNING"


def test_dynamic_keys_mode() -> None:
    assert settings().dynamic_keys is True
    assert settings(**STATIC).dynamic_keys is False


# ------------------------------------------------------------------------------------------
# invalid values name the variable
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "abc"),
        ("PORT", "70000"),
        ("PORT", "-1"),
        ("PORT", "80.5"),
        ("LOG_LEVEL", "LOUD"),
        ("MAX_TOKENS_LIMIT", "abc"),
        ("MAX_TOKENS_LIMIT", "0"),
        ("MAX_TOKENS_LIMIT", "-100"),
        ("REQUEST_TIMEOUT", "soon"),
        ("REQUEST_TIMEOUT", "0"),
        ("REQUEST_TIMEOUT", "-5"),
        ("CONNECT_TIMEOUT", "x"),
        ("REQUEST_TIMEOUT", "inf"),
        ("REQUEST_TIMEOUT", "nan"),
        ("PING_INTERVAL", "infinity"),
        ("CUSTOM_HEADER_", "x"),
        ("CUSTOM_HEADER_X TITLE", "x"),
        ("CUSTOM_HEADER_X_TITLE", "one\r\nx-injected: two"),
        ("ALLOW_UNAUTHENTICATED", "maybe"),
        ("OPENAI_BASE_URL", "localhost:11434"),
        ("OPENAI_BASE_URL", "ftp://example.org/v1"),
        ("OPENAI_BASE_URL", "not a url"),
    ],
)
def test_invalid_values_raise_config_error_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        settings(**{name: value})
    assert name in str(excinfo.value)


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("1", True), ("false", False)])
def test_allow_unauthenticated_parsing(value: str, expected: bool) -> None:
    assert settings(ALLOW_UNAUTHENTICATED=value).allow_unauthenticated is expected


# ------------------------------------------------------------------------------------------
# exposure: never an open relay spending the owner's key
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "proxy.example.org"])
def test_non_loopback_static_mode_without_client_key_is_refused(
    host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolve_as(monkeypatch, {"proxy.example.org": "203.0.113.7"})
    with pytest.raises(ConfigError) as excinfo:
        settings(HOST=host, **STATIC)
    assert "ANTHROPIC_API_KEY" in str(excinfo.value)
    assert "listens beyond this machine" in str(excinfo.value)


def resolve_as(monkeypatch: pytest.MonkeyPatch, names: dict[str, str]) -> None:
    """Name resolution without DNS: `names` resolve, every other name fails."""
    import socket

    def getaddrinfo(host: str, *args: Any, **kwargs: Any) -> list[Any]:
        if host not in names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (names[host], 0))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.mark.parametrize(
    ("host", "said"),
    [
        ("127.0.0.l", "is not a valid IP address"),
        ("300.1.1.1", "is not a valid IP address"),
        ("0.0.0.0:8082", "the port goes in PORT"),
        ("my host", "is not an IP address or a host name"),
        ("locahost", "does not resolve"),
    ],
)
def test_a_mistyped_host_is_said_to_be_one(
    host: str, said: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 16: not the "listens beyond this machine" security error."""
    resolve_as(monkeypatch, {})
    with pytest.raises(ConfigError) as excinfo:
        settings(HOST=host, **STATIC)
    message = str(excinfo.value)
    assert said in message and f"HOST={host!r}" in message
    assert "listens beyond" not in message


def test_a_host_name_for_this_machine_needs_no_client_key(monkeypatch: pytest.MonkeyPatch) -> None:
    resolve_as(monkeypatch, {"ip6-localhost": "::1", "me.internal": "127.0.1.1"})
    assert settings(HOST="ip6-localhost", **STATIC).host == "ip6-localhost"
    assert settings(HOST="me.internal", **STATIC).host == "me.internal"


def test_blank_anthropic_key_does_not_count_as_protection() -> None:
    with pytest.raises(ConfigError):
        settings(HOST="0.0.0.0", ANTHROPIC_API_KEY="   ", **STATIC)


def test_non_loopback_static_mode_with_client_key_is_allowed() -> None:
    s = settings(HOST="0.0.0.0", ANTHROPIC_API_KEY="proxy-secret", **STATIC)
    assert s.host == "0.0.0.0"


def test_non_loopback_static_mode_allowed_when_explicitly_unauthenticated() -> None:
    s = settings(HOST="0.0.0.0", ALLOW_UNAUTHENTICATED="true", **STATIC)
    assert s.allow_unauthenticated is True


def test_non_loopback_dynamic_mode_is_allowed() -> None:
    # Without OPENAI_API_KEY every client spends its own key.
    assert settings(HOST="0.0.0.0").host == "0.0.0.0"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.53"])
def test_loopback_static_mode_needs_no_client_key(host: str) -> None:
    assert settings(HOST=host, **STATIC).host == host


# ------------------------------------------------------------------------------------------
# base URL normalisation
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://api.openai.com/v1", "https://api.openai.com/v1"),
        ("https://api.openai.com/v1/", "https://api.openai.com/v1"),
        ("https://api.openai.com", "https://api.openai.com/v1"),
        ("https://api.openai.com/", "https://api.openai.com/v1"),
        ("http://localhost:11434", "http://localhost:11434/v1"),
        ("http://localhost:11434/v1", "http://localhost:11434/v1"),
        ("https://api.openai.com/v1/chat/completions", "https://api.openai.com/v1"),
        ("http://127.0.0.1:8000/v1/chat/completions/", "http://127.0.0.1:8000/v1"),
        ("https://res.openai.azure.com/openai/v1", "https://res.openai.azure.com/openai/v1"),
        ("https://res.openai.azure.com/openai/v1/", "https://res.openai.azure.com/openai/v1"),
        (
            "https://generativelanguage.googleapis.com/v1beta/openai/",
            "https://generativelanguage.googleapis.com/v1beta/openai",
        ),
        (
            "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions",
            "https://generativelanguage.googleapis.com/v1beta/openai",
        ),
        ("https://openrouter.ai/api", "https://openrouter.ai/api/v1"),
        ("https://openrouter.ai/api/", "https://openrouter.ai/api/v1"),
        ("https://openrouter.ai/api/v1", "https://openrouter.ai/api/v1"),
        ("https://api.groq.com/openai/v1", "https://api.groq.com/openai/v1"),
        ("  https://api.deepseek.com  ", "https://api.deepseek.com/v1"),
    ],
)
def test_normalize_base_url(given: str, expected: str) -> None:
    assert normalize_base_url(given) == expected
    assert settings(OPENAI_BASE_URL=given).openai_base_url == expected


def test_normalize_base_url_is_idempotent() -> None:
    for url in (
        "https://openrouter.ai/api",
        "http://localhost:11434",
        "https://generativelanguage.googleapis.com/v1beta/openai/",
    ):
        once = normalize_base_url(url)
        assert normalize_base_url(once) == once


def test_chat_url_is_base_plus_chat_completions() -> None:
    for base, url in (
        ("http://localhost:11434", "http://localhost:11434/v1/chat/completions"),
        ("https://openrouter.ai/api", "https://openrouter.ai/api/v1/chat/completions"),
        (
            "https://generativelanguage.googleapis.com/v1beta/openai/",
            "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions",
        ),
    ):
        upstream = Upstream(settings(OPENAI_BASE_URL=base, **STATIC))
        assert upstream.chat_url("any-model") == url
        assert "//chat" not in upstream.chat_url("any-model")


def test_models_url() -> None:
    upstream = Upstream(settings(OPENAI_BASE_URL="http://localhost:11434", **STATIC))
    assert upstream.models_url() == "http://localhost:11434/v1/models"


# ------------------------------------------------------------------------------------------
# Azure (C.1)
# ------------------------------------------------------------------------------------------

AZURE_VERSION = "2024-10-21"


def azure(base: str) -> Upstream:
    return Upstream(
        settings(OPENAI_BASE_URL=base, AZURE_API_VERSION=AZURE_VERSION, OPENAI_API_KEY="az-key")
    )


@pytest.mark.parametrize(
    "base",
    [
        "https://res.openai.azure.com",
        "https://res.openai.azure.com/",
        "https://res.openai.azure.com/openai",
        "https://res.openai.azure.com/openai/",
    ],
)
def test_azure_resource_form(base: str) -> None:
    url = azure(base).chat_url("gpt-4o-deploy")
    assert url == (
        "https://res.openai.azure.com/openai/deployments/gpt-4o-deploy/chat/completions"
        f"?api-version={AZURE_VERSION}"
    )


def test_azure_deployments_form() -> None:
    url = azure("https://res.openai.azure.com/openai/deployments/my-dep").chat_url("ignored")
    assert url == (
        "https://res.openai.azure.com/openai/deployments/my-dep/chat/completions"
        f"?api-version={AZURE_VERSION}"
    )
    assert url.count("/deployments/") == 1


def test_azure_v1_form_has_no_api_version() -> None:
    url = azure("https://res.openai.azure.com/openai/v1").chat_url("gpt-4o-deploy")
    assert url == "https://res.openai.azure.com/openai/v1/chat/completions"


def test_azure_uses_the_api_key_header() -> None:
    headers = azure("https://res.openai.azure.com").headers("az-key")
    assert headers["api-key"] == "az-key"
    assert "authorization" not in {k.lower() for k in headers}
    assert headers["content-type"] == "application/json"


def test_openai_uses_a_bearer_token() -> None:
    headers = Upstream(settings(**STATIC)).headers("sk-upstream")
    assert headers["authorization"] == "Bearer sk-upstream"
    assert "api-key" not in {k.lower() for k in headers}


# ------------------------------------------------------------------------------------------
# CUSTOM_HEADER_*
# ------------------------------------------------------------------------------------------


def test_custom_headers_are_parsed() -> None:
    s = settings(
        CUSTOM_HEADER_HTTP_REFERER="https://example.org",
        CUSTOM_HEADER_X_TITLE="claude-code-proxy",
        **STATIC,
    )
    assert s.custom_headers == {
        "http-referer": "https://example.org",
        "x-title": "claude-code-proxy",
    }
    headers = Upstream(s).headers("sk-upstream")
    assert headers["http-referer"] == "https://example.org"
    assert headers["x-title"] == "claude-code-proxy"
    assert headers["authorization"] == "Bearer sk-upstream"


@pytest.mark.parametrize("variable", ["CUSTOM_HEADER_AUTHORIZATION", "CUSTOM_HEADER_API_KEY"])
def test_custom_headers_cannot_override_authentication(variable: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        settings(**{variable: "sneaky"}, **STATIC)
    assert variable in str(excinfo.value)


def test_custom_header_never_replaces_the_upstream_key() -> None:
    # Even a Settings built by hand (bypassing from_env checks) keeps the proxy's auth.
    s = Settings(openai_api_key="sk-upstream", custom_headers={"x-org": "acme"})
    headers = Upstream(s).headers("sk-upstream")
    assert headers["authorization"] == "Bearer sk-upstream"
    assert headers["x-org"] == "acme"


# ------------------------------------------------------------------------------------------
# client authentication (A.2, F.17)
# ------------------------------------------------------------------------------------------


def hdrs(**values: str) -> Headers:
    """Case-insensitive request headers, as the ASGI app sees them."""
    return Headers({k.replace("_", "-"): v for k, v in values.items()})


def test_client_key_from_x_api_key_or_bearer() -> None:
    assert client_key(hdrs(x_api_key="k1")) == "k1"
    assert client_key(hdrs(Authorization="Bearer k2")) == "k2"
    assert client_key(hdrs(Authorization="bearer k3")) == "k3"
    assert client_key(hdrs()) is None
    assert client_key(hdrs(Authorization="Basic dXNlcjpwYXNz")) is None


def test_client_key_header_names_are_case_insensitive() -> None:
    assert client_key(Headers({"X-Api-Key": "k"})) == "k"
    assert client_key(Headers({"AUTHORIZATION": "Bearer t"})) == "t"


def protected() -> Settings:
    return settings(ANTHROPIC_API_KEY="proxy-secret", **STATIC)


@pytest.mark.parametrize(
    "headers",
    [{"x_api_key": "proxy-secret"}, {"Authorization": "Bearer proxy-secret"}],
)
def test_static_mode_with_client_key_accepts_the_right_key(headers: dict[str, str]) -> None:
    assert upstream_key(hdrs(**headers), protected()) == "sk-upstream"


@pytest.mark.parametrize(
    "headers",
    [
        {"x_api_key": "wrong"},
        {"Authorization": "Bearer wrong"},
        {},
        {"x_api_key": ""},
        {"x_api_key": "proxy-secret-but-longer"},
        {"x_api_key": "proxy-secre"},
    ],
)
def test_static_mode_with_client_key_rejects_wrong_or_missing_keys(
    headers: dict[str, Any],
) -> None:
    with pytest.raises(ProxyError) as excinfo:
        upstream_key(hdrs(**headers), protected())
    error = excinfo.value
    assert error.status == 401
    assert error.error_type == "authentication_error"
    assert error.body()["error"]["type"] == "authentication_error"
    assert "proxy-secret" not in error.message


@pytest.mark.parametrize("headers", [{}, {"x_api_key": "anything"}, {"Authorization": "Bearer x"}])
def test_static_mode_without_client_key_accepts_anyone(headers: dict[str, str]) -> None:
    assert upstream_key(hdrs(**headers), settings(**STATIC)) == "sk-upstream"


@pytest.mark.parametrize(
    ("headers", "key"),
    [
        ({"x_api_key": "sk-client-1"}, "sk-client-1"),
        ({"Authorization": "Bearer sk-client-2"}, "sk-client-2"),
    ],
)
def test_dynamic_mode_uses_the_client_key(headers: dict[str, str], key: str) -> None:
    assert upstream_key(hdrs(**headers), settings()) == key


def test_capture_dir_is_checked_at_start_up_without_creating_it(tmp_path: Any) -> None:
    target = tmp_path / "new" / "captures"
    assert settings(CAPTURE_DIR=str(target)).capture_dir == str(target)
    assert not target.exists()  # created by the proxy when it starts, not by parsing
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for value in (str(blocker), str(blocker / "captures")):
        with pytest.raises(ConfigError, match="CAPTURE_DIR="):
            settings(CAPTURE_DIR=value)


@pytest.mark.parametrize(
    "base_url",
    [
        "http://localhost:11434",  # Ollama
        "http://host.docker.internal:11434/v1",
        "http://127.0.0.1:1234/v1",  # LM Studio
        "http://localhost:8080/v1",  # llama.cpp
        "http://10.0.0.5:8000/v1",  # vLLM
    ],
)
def test_dynamic_mode_local_servers_accept_any_non_empty_key(base_url: str) -> None:
    """The quick starts' `ollama`, `lm-studio` … keys (issue 16): no 401 before the upstream."""
    local = settings(OPENAI_BASE_URL=base_url)
    for key in ("ollama", "lm-studio", "vllm", "sk-x"):
        assert upstream_key(hdrs(**{"x-api-key": key}), local) == key
    with pytest.raises(ProxyError):
        upstream_key(hdrs(), local)
    # An explicit CLIENT_KEY_PATTERN still wins.
    strict = settings(OPENAI_BASE_URL=base_url, CLIENT_KEY_PATTERN=r"^sk-\S+$")
    with pytest.raises(ProxyError):
        upstream_key(hdrs(**{"x-api-key": "ollama"}), strict)


@pytest.mark.parametrize("base_url", ["https://api.openai.com/v1", "https://openrouter.ai/api/v1"])
def test_dynamic_mode_hosted_providers_keep_the_key_shape_check(base_url: str) -> None:
    hosted = settings(OPENAI_BASE_URL=base_url)
    with pytest.raises(ProxyError) as excinfo:
        upstream_key(hdrs(**{"x-api-key": "ollama"}), hosted)
    assert excinfo.value.status == 401
    assert upstream_key(hdrs(**{"x-api-key": "sk-real"}), hosted) == "sk-real"


def test_dynamic_mode_without_a_key_is_401() -> None:
    with pytest.raises(ProxyError) as excinfo:
        upstream_key(hdrs(), settings())
    assert excinfo.value.status == 401
    assert excinfo.value.error_type == "authentication_error"


# ------------------------------------------------------------------------------------------
# model mapping
# ------------------------------------------------------------------------------------------

MODELS = settings(BIG_MODEL="gpt-big", MIDDLE_MODEL="gpt-middle", SMALL_MODEL="gpt-small")


@pytest.mark.parametrize(
    ("client_model", "upstream"),
    [
        ("claude-3-5-haiku-20241022", "gpt-small"),
        ("claude-haiku-4-5", "gpt-small"),
        ("claude-haiku-4-5-20251001", "gpt-small"),
        ("claude-sonnet-4-5-20250929", "gpt-middle"),
        ("claude-3-7-sonnet-latest", "gpt-middle"),
        ("claude-sonnet-4-5", "gpt-middle"),
        ("claude-opus-4-1-20250805", "gpt-big"),
        ("claude-opus-5-5", "gpt-big"),
        ("CLAUDE-OPUS-4", "gpt-big"),
        ("Claude-Haiku-4-5", "gpt-small"),
        ("claude-fable-5-2", "gpt-big"),
        ("claude-sonnet-4-5[1m]", "gpt-middle"),
    ],
)
def test_claude_models_are_mapped(client_model: str, upstream: str) -> None:
    assert map_model(client_model, MODELS) == upstream


@pytest.mark.parametrize(
    "client_model", ["gpt-4o", "gpt-4.1", "qwen3-coder:480b", "deepseek/deepseek-chat-v3"]
)
def test_other_models_pass_through(client_model: str) -> None:
    assert map_model(client_model, MODELS) == client_model


def test_mapping_follows_middle_defaulting_to_big() -> None:
    s = settings(BIG_MODEL="only-big", SMALL_MODEL="small")
    assert map_model("claude-sonnet-4-5", s) == "only-big"
    assert map_model("claude-opus-4-1", s) == "only-big"
    assert map_model("claude-haiku-4-5", s) == "small"
