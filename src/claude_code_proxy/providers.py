"""Provider capabilities: one declarative table instead of `if`s across the code."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, replace
from typing import Literal
from urllib.parse import urlsplit

from claude_code_proxy.translate.request import TranslationOptions


@dataclass(frozen=True)
class Profile:
    """What one upstream (provider, model) accepts."""

    name: str = "generic"
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    pdf_as_file: bool = False
    include_usage: bool = True

    def options(self, *, max_tokens_limit: int | None) -> TranslationOptions:
        return TranslationOptions(
            max_tokens_limit=max_tokens_limit,
            max_tokens_field=self.max_tokens_field,
            include_usage=self.include_usage,
            pdf_as_file=self.pdf_as_file,
        )


# Host patterns → provider profile.
PROVIDERS: tuple[tuple[str, Profile], ...] = (
    ("api.openai.com", Profile(name="openai", pdf_as_file=True)),
    ("*.openai.azure.com", Profile(name="azure", pdf_as_file=True)),
    ("*.cognitiveservices.azure.com", Profile(name="azure", pdf_as_file=True)),
    ("openrouter.ai", Profile(name="openrouter", pdf_as_file=True)),
)

# Model-name patterns → overrides that hold on any host (local servers included).
MODEL_RULES: tuple[tuple[str, dict[str, object]], ...] = (
    ("o1*", {"max_tokens_field": "max_completion_tokens"}),
    ("o3*", {"max_tokens_field": "max_completion_tokens"}),
    ("o4*", {"max_tokens_field": "max_completion_tokens"}),
    ("gpt-5*", {"max_tokens_field": "max_completion_tokens"}),
    ("*/o1*", {"max_tokens_field": "max_completion_tokens"}),
    ("*/o3*", {"max_tokens_field": "max_completion_tokens"}),
    ("*/o4*", {"max_tokens_field": "max_completion_tokens"}),
    ("*/gpt-5*", {"max_tokens_field": "max_completion_tokens"}),
)


def profile_for(base_url: str, model: str) -> Profile:
    host = (urlsplit(base_url).hostname or "").lower()
    profile = next((p for pattern, p in PROVIDERS if fnmatch.fnmatchcase(host, pattern)), Profile())
    lowered = model.lower()
    for pattern, overrides in MODEL_RULES:
        if fnmatch.fnmatchcase(lowered, pattern):
            profile = replace(profile, **overrides)  # type: ignore[arg-type]
    return profile
