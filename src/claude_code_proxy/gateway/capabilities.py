"""Provider capabilities: one declarative table instead of `if`s across the code.

A profile is built in layers: the generic default, the provider matched by the base
URL's host, every model-name rule that matches (so a model alone picks the right
behaviour on local or unknown hosts), the user's overrides file (`PROVIDER_PROFILES`),
a configuration file's per-provider `profile` table, and finally what the proxy learned
from the upstream's own 400s at run time. Each provider has its own table (and memory).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import orjson

from claude_code_proxy.translate.chat.request import (
    ReasoningEcho,
    ReasoningParam,
    TranslationOptions,
)


@dataclass(frozen=True)
class Profile:
    """What one upstream (provider, model) accepts and how it speaks."""

    name: str = "generic"
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    max_output_tokens: int | None = None
    include_usage: bool = True
    pdf_as_file: bool = False
    drop_params: frozenset[str] = frozenset()
    reasoning_param: ReasoningParam = "none"
    efforts: tuple[str, ...] = ("low", "medium", "high")
    reasoning_echo: ReasoningEcho = "none"
    stash_reasoning: bool = False
    think_tags: bool = True
    schema_dialect: Literal["json_schema", "gemini"] = "json_schema"
    tool_id_style: Literal["default", "mistral"] = "default"
    prompt_cache_key: bool = False
    # System text that arrives mid-conversation stays at its place either way (prefix caches):
    # True sends it as a `system` message there, False as `<system>` text in the adjacent user
    # turn, which every chat template accepts (docs/prefix-stability.md).
    system_in_place: bool = False
    forward_top_k: bool = False
    thought_signatures: bool = False
    cache_control: bool = False
    # The reported prompt count leaves out tokens served from a cache (not the billing sense):
    # a count under a third of the proxy's estimate is replaced by the estimate.
    prompt_under_count: bool = False
    # Upstream dialect (docs/responses.md): the host serves the Responses API, the model
    # answers only there, and an explicit or learned choice ("auto" decides from the two).
    responses_api: bool = False
    responses_only: bool = False
    api: Literal["auto", "chat", "responses"] = "auto"

    def upstream_api(self, setting: str = "auto") -> Literal["chat", "responses"]:
        """The dialect for this (host, model) under UPSTREAM_API=`setting`."""
        choice = setting if setting != "auto" else self.api
        if choice == "chat" or choice == "responses":
            return "chat" if choice == "chat" else "responses"
        return "responses" if self.responses_api and self.responses_only else "chat"

    # A server that usually runs without keys (Ollama, LM Studio …): in dynamic mode any
    # non-empty client key is passed on unless CLIENT_KEY_PATTERN says otherwise.
    local_server: bool = False
    # Turn tool calls the model wrote as text into tool_use (translate/rescue.py): for servers
    # that may not parse them; hosted providers parse their models' calls themselves.
    rescue_tool_calls: bool = True
    # Whether the model reads images: True, False (text-only) or None (not known). The
    # `image` route is skipped for a tier whose target is known to read them (routing.md).
    vision: bool | None = None

    def options(self, *, max_tokens_limit: int | None) -> TranslationOptions:
        limits = [n for n in (max_tokens_limit, self.max_output_tokens) if n]
        return TranslationOptions(
            max_tokens_limit=min(limits) if limits else None,
            max_tokens_field=self.max_tokens_field,
            include_usage=self.include_usage,
            pdf_as_file=self.pdf_as_file,
            system_in_place=self.system_in_place,
            drop_params=self.drop_params,
            reasoning_param=self.reasoning_param,
            efforts=self.efforts,
            reasoning_echo=self.reasoning_echo,
            schema_dialect=self.schema_dialect,
            tool_id_style=self.tool_id_style,
            prompt_cache_key=self.prompt_cache_key,
            forward_top_k=self.forward_top_k,
            thought_signatures=self.thought_signatures,
            cache_control=self.cache_control,
        )


Overrides = dict[str, Any]
_VISION: Overrides = {"vision": True}
_TEXT_ONLY: Overrides = {"vision": False}
_REASONING_MODELS: Overrides = {
    "max_tokens_field": "max_completion_tokens",
    "drop_params": frozenset({"temperature", "top_p", "stop"}),
    "reasoning_param": "reasoning_effort",
}

# A router speaks one reasoning dialect whatever model sits behind it: model rules must not
# change these (OpenRouter wants its own `reasoning_details` back, not DeepSeek's field).
_ROUTER_PINNED = frozenset(
    {"reasoning_param", "reasoning_echo", "stash_reasoning", "efforts", "thought_signatures"}
)
PINNED = "pinned"
# Hosted providers parse their models' tool calls: no rescuing of calls written as text.
_HOSTED: Overrides = {"rescue_tool_calls": False}
_AZURE: Overrides = {"name": "azure", "pdf_as_file": True, "responses_api": True, **_HOSTED}
# Models OpenAI serves only on the Responses API (on OpenAI and Azure hosts).
_RESPONSES_ONLY: Overrides = {"responses_only": True}

# Mid-conversation system messages (`system_in_place`): OpenAI's API and Azure OpenAI render
# `system` messages where they stand. Elsewhere the default folds them into the user turn:
# DeepSeek's and Gemini's endpoints move every system message to the front (a prefix-cache
# miss from the first token, every turn), OpenRouter does the same for Anthropic models, and
# open-model chat templates (Qwen, Gemma, Mistral, served by vLLM, SGLang, llama.cpp, Ollama,
# LM Studio, Azure AI Foundry, Groq, Mistral's API) reject or hoist a system message that is
# not the first one.
_SYSTEM_IN_PLACE: Overrides = {"system_in_place": True}

# Host (or host:port) patterns → provider settings. First match wins. A `pinned` set names
# settings that the model rules below leave alone.
PROVIDERS: tuple[tuple[str, Overrides], ...] = (
    (
        "api.openai.com",
        {
            "name": "openai",
            "pdf_as_file": True,
            "prompt_cache_key": True,
            "think_tags": False,
            "responses_api": True,
            **_HOSTED,
            **_SYSTEM_IN_PLACE,
        },
    ),
    ("*.openai.azure.com", {**_AZURE, "think_tags": False, **_SYSTEM_IN_PLACE}),
    ("*.cognitiveservices.azure.com", {**_AZURE, "think_tags": False, **_SYSTEM_IN_PLACE}),
    ("*.services.ai.azure.com", _AZURE),
    (
        "openrouter.ai",
        {
            "name": "openrouter",
            "pdf_as_file": True,
            "reasoning_param": "openrouter",
            "efforts": ("none", "minimal", "low", "medium", "high", "xhigh"),
            "reasoning_echo": "reasoning_details",
            "stash_reasoning": True,
            "forward_top_k": True,
            **_HOSTED,
            PINNED: _ROUTER_PINNED,
        },
    ),
    (
        "api.deepseek.com",
        {
            "name": "deepseek",
            "reasoning_param": "deepseek",
            "reasoning_echo": "reasoning_content",
            "stash_reasoning": True,
            **_HOSTED,
        },
    ),
    (
        "generativelanguage.googleapis.com",
        {
            "name": "gemini",
            "schema_dialect": "gemini",
            "reasoning_param": "reasoning_effort",
            **_HOSTED,
        },
    ),
    ("api.mistral.ai", {"name": "mistral", "tool_id_style": "mistral", **_HOSTED}),
    ("api.groq.com", {"name": "groq", **_HOSTED}),
    # Ollama's prompt_eval_count counts only the tokens its KV cache did not already hold.
    (
        "*:11434",
        {
            "name": "ollama",
            "reasoning_echo": "reasoning",
            "local_server": True,
            "prompt_under_count": True,
        },
    ),
    ("*:1234", {"name": "lmstudio", "local_server": True}),
    ("*:8080", {"name": "llama.cpp", "forward_top_k": True, "local_server": True}),
    ("*:30000", {"name": "sglang", "forward_top_k": True, "local_server": True}),
    (
        "*:8000",
        {
            "name": "vllm",
            "reasoning_echo": "reasoning",
            "forward_top_k": True,
            "local_server": True,
        },
    ),
)

# Model-name patterns (case-insensitive, `*/` prefixes allowed for routers) → settings that
# hold on any host. Every matching rule applies, in order.
MODELS: tuple[tuple[str, Overrides], ...] = (
    ("o1*", _REASONING_MODELS),
    ("o3*", _REASONING_MODELS),
    ("o4*", _REASONING_MODELS),
    ("gpt-5*", {**_REASONING_MODELS, "efforts": ("minimal", "low", "medium", "high")}),
    ("gpt-5.[1-9]*", {"efforts": ("none", "low", "medium", "high", "xhigh")}),
    ("gpt-5*-chat*", {"reasoning_param": "none"}),
    ("*codex*", {**_REASONING_MODELS, **_RESPONSES_ONLY, "efforts": ("low", "medium", "high")}),
    ("gpt-5.[1-9]*codex-max*", {"efforts": ("low", "medium", "high", "xhigh")}),
    ("o1-pro*", _RESPONSES_ONLY),
    ("o3-pro*", _RESPONSES_ONLY),
    ("gpt-5*-pro*", _RESPONSES_ONLY),
    ("gpt-oss*", {"reasoning_param": "reasoning_effort", "reasoning_echo": "reasoning"}),
    # Image input (docs/routing.md): only families whose every variant is known either way.
    ("gpt-4o*", _VISION),
    ("gpt-4.1*", _VISION),
    ("gpt-5*", _VISION),
    ("gemini-*", _VISION),
    ("claude-*", _VISION),
    ("*-vl*", _VISION),
    ("llava*", _VISION),
    ("pixtral*", _VISION),
    ("gpt-oss*", _TEXT_ONLY),
    ("deepseek-chat*", _TEXT_ONLY),
    ("deepseek-reasoner*", _TEXT_ONLY),
    ("qwen3-coder*", _TEXT_ONLY),
    ("qwen2.5-coder*", _TEXT_ONLY),
    ("codestral*", _TEXT_ONLY),
    ("deepseek-reasoner*", {"reasoning_echo": "reasoning_content", "stash_reasoning": True}),
    ("deepseek-r1*", {"reasoning_echo": "reasoning_content", "stash_reasoning": True}),
    ("gemini-*", {"schema_dialect": "gemini"}),
    ("gemini-2.5*", {"reasoning_param": "reasoning_effort"}),
    ("gemini-3*", {"reasoning_param": "reasoning_effort", "thought_signatures": True}),
    ("mistral*", {"tool_id_style": "mistral"}),
    ("codestral*", {"tool_id_style": "mistral"}),
    ("devstral*", {"tool_id_style": "mistral"}),
    ("magistral*", {"tool_id_style": "mistral"}),
    ("ministral*", {"tool_id_style": "mistral"}),
    ("qwen3*", {"think_tags": True}),
    # Router ids of models with explicit prompt caching (OpenRouter passes the markers on).
    ("anthropic/*", {"cache_control": True}),
    ("google/gemini*", {"cache_control": True}),
)

_FIELDS = {f.name: f for f in dataclasses.fields(Profile)}


class ProfileError(ValueError):
    """The overrides file names an unknown setting or has a value of the wrong kind."""


def _coerce(name: str, value: Any) -> Any:
    if name == PINNED:
        if not isinstance(value, list | tuple | set | frozenset) or set(value) - set(_FIELDS):
            raise ProfileError(f"{PINNED} must be a list of profile setting names")
        return frozenset(str(v) for v in value)
    if name not in _FIELDS:
        raise ProfileError(f"unknown profile setting {name!r}; known: {', '.join(sorted(_FIELDS))}")
    if name == "vision" and value is not None and not isinstance(value, bool):
        raise ProfileError("vision must be true or false")
    if name == "drop_params":
        if not isinstance(value, list | tuple | set | frozenset):
            raise ProfileError("drop_params must be a list of parameter names")
        return frozenset(str(v) for v in value)
    if name == "efforts":
        if not isinstance(value, list | tuple):
            raise ProfileError('efforts must be a list such as ["low", "medium", "high"]')
        return tuple(str(v) for v in value)
    return value


def _apply(profile: Profile, overrides: Mapping[str, Any]) -> Profile:
    values = {k: _coerce(k, v) for k, v in overrides.items() if k != PINNED}
    return replace(profile, **values)


@dataclass
class CapabilityTable:
    """Built-in rules + user overrides + fixes learned from upstream errors."""

    providers: tuple[tuple[str, Overrides], ...] = PROVIDERS
    models: tuple[tuple[str, Overrides], ...] = MODELS
    user_providers: tuple[tuple[str, Overrides], ...] = ()
    user_models: tuple[tuple[str, Overrides], ...] = ()
    #: A configuration file's `profile = {…}` for this provider: applied over the rules.
    overrides: Overrides = field(default_factory=dict)
    learned: dict[tuple[str, str], Overrides] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _memo: dict[tuple[str, str], Profile] = field(default_factory=dict, repr=False)

    @classmethod
    def from_file(cls, path: str | None) -> CapabilityTable:
        """Load user overrides: `{"providers": {pattern: {...}}, "models": {pattern: {...}}}`."""
        if not path:
            return cls()
        try:
            data = orjson.loads(Path(path).read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ProfileError(f"cannot read PROVIDER_PROFILES file {path}: {exc}") from None
        if not isinstance(data, dict) or set(data) - {"providers", "models"}:
            raise ProfileError('PROVIDER_PROFILES must be {"providers": {...}, "models": {...}}')
        tables = []
        for key in ("providers", "models"):
            section = data.get(key, {})
            if not isinstance(section, dict) or not all(
                isinstance(v, dict) for v in section.values()
            ):
                raise ProfileError(f"PROVIDER_PROFILES {key!r} must map patterns to objects")
            for overrides in section.values():
                _apply(Profile(), overrides)  # validate now, not on the first request
            tables.append(tuple((str(k).lower(), v) for k, v in section.items()))
        return cls(user_providers=tables[0], user_models=tables[1])

    def profile(self, base_url: str, model: str) -> Profile:
        memo = self._memo.get((base_url, model))
        if memo is not None:
            return memo
        profile = self._build(base_url, model)
        if len(self._memo) < 4096:
            self._memo[(base_url, model)] = profile
        return profile

    def _build(self, base_url: str, model: str) -> Profile:
        parts = urlsplit(base_url)
        host = (parts.hostname or "").lower()
        netloc = f"{host}:{parts.port}" if parts.port else host
        profile = Profile()
        pinned: frozenset[str] = frozenset()
        for pattern, overrides in (*self.user_providers, *self.providers):
            if fnmatch.fnmatchcase(host, pattern) or fnmatch.fnmatchcase(netloc, pattern):
                profile = _apply(profile, overrides)
                pinned = _coerce(PINNED, overrides.get(PINNED, ()))
                break
        lowered = model.lower()
        bare = lowered.rsplit("/", 1)[-1]
        for pattern, overrides in (*self.models, *self.user_models):
            if fnmatch.fnmatchcase(lowered, pattern) or fnmatch.fnmatchcase(bare, pattern):
                profile = _apply(profile, {k: v for k, v in overrides.items() if k not in pinned})
        if self.overrides:
            profile = _apply(profile, self.overrides)
        learned = self.learned.get((netloc, model))
        if learned:
            dropped = profile.drop_params
            profile = _apply(profile, learned)
            profile = replace(profile, drop_params=dropped | profile.drop_params)
        return profile

    def learn(self, base_url: str, model: str, **overrides: Any) -> None:
        """Remember a fix for this model for the life of the process."""
        parts = urlsplit(base_url)
        host = (parts.hostname or "").lower()
        netloc = f"{host}:{parts.port}" if parts.port else host
        with self._lock:
            current = dict(self.learned.get((netloc, model), {}))
            if "drop_params" in overrides:
                before = frozenset(current.get("drop_params", ()))
                overrides["drop_params"] = before | frozenset(overrides["drop_params"])
            current.update(overrides)
            self.learned[(netloc, model)] = current
            self._memo.clear()


DEFAULT_TABLE = CapabilityTable()


def profile_for(base_url: str, model: str) -> Profile:
    """The built-in profile (no user overrides, nothing learned)."""
    return DEFAULT_TABLE.profile(base_url, model)
