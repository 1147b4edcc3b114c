"""Reading a provider's model list: OpenAI (`data`), Ollama (`models`), Gemini (`models/`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: Model-list fields that give a model's context window: OpenRouter and others
#: (`context_length`), vLLM (`max_model_len`), Groq (`context_window`), LM Studio
#: (`max_context_length`).
CONTEXT_FIELDS = ("context_length", "max_model_len", "context_window", "max_context_length")


def contains_model(available: Sequence[str], model: str) -> bool:
    """Exact match, tolerating Ollama's implicit `:latest` tag and Gemini's `models/` prefix."""
    names = set(available)
    names.update(name[len("models/") :] for name in available if name.startswith("models/"))
    if model in names:
        return True
    if ":" not in model and f"{model}:latest" in names:
        return True
    return model.endswith(":latest") and model[: -len(":latest")] in names


def model_ids(body: Any) -> list[str] | None:
    """Model ids from an OpenAI list (`data`) or an Ollama-style one (`models`)."""
    if not isinstance(body, dict):
        return None
    items = body.get("data", body.get("models"))
    if not isinstance(items, list):
        return None
    ids = []
    for item in items:
        if isinstance(item, dict):
            model = item.get("id", item.get("name"))
            if isinstance(model, str):
                ids.append(model)
        elif isinstance(item, str):
            ids.append(item)
    return ids


def context_windows(body: Any) -> dict[str, int]:
    """Context windows (tokens) by model id, for the entries of a model list that give one."""
    if not isinstance(body, dict):
        return {}
    items = body.get("data", body.get("models"))
    windows: dict[str, int] = {}
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        model = item.get("id", item.get("name"))
        if not isinstance(model, str):
            continue
        for name in CONTEXT_FIELDS:
            value = item.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                windows[model] = value
                break
    return windows
