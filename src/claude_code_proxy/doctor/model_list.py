"""Reading a provider's model list: OpenAI (`data`), Ollama (`models`), Gemini (`models/`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


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
