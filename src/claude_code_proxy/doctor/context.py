"""What the checks share: the settings, the report, and what earlier checks found out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from claude_code_proxy.config import Settings
from claude_code_proxy.doctor.report import Report, Status
from claude_code_proxy.launcher import client_key

DEFAULT_TIMEOUT = 60.0


@dataclass
class Context:
    """One doctor run. Later checks read the flags earlier ones set (a rejected key skips
    the chat checks, a missing model is not chatted with)."""

    settings: Settings
    environ: Mapping[str, str]
    report: Report
    chat: bool = True
    timeout: float = DEFAULT_TIMEOUT
    key: str = ""
    auth_failed: bool = False
    base_url_doubled: bool = False
    missing_models: set[str] = field(default_factory=set)
    #: The provider's `GET /models` body, when it answered one.
    model_list: Any = None
    #: Context windows (tokens) by model id, configured or discovered.
    context_windows: dict[str, int] = field(default_factory=dict)
    #: (label, upstream model) to check; None: BIG/MIDDLE/SMALL_MODEL and MODEL_MAP.
    models: list[tuple[str, str]] | None = None
    #: How the key is named in messages; None: OPENAI_API_KEY or "client key".
    key_label: str | None = None
    #: Configured windows (tokens) by model, from a file's `[context_windows]`; None: the
    #: environment's CONTEXT_WINDOW / <TIER>_MODEL_CONTEXT_WINDOW.
    configured_windows: dict[str, int] | None = None

    def __post_init__(self) -> None:
        self.key = self.key or self.settings.openai_api_key or client_key(self.settings)
        s = self.settings
        self.report.secrets.extend([s.openai_api_key, s.anthropic_api_key, self.key])

    @property
    def host(self) -> str:
        return urlsplit(self.settings.openai_base_url).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.settings.openai_base_url)
        return parts.port or (443 if parts.scheme == "https" else 80)

    def add(self, name: str, status: Status, detail: str, fix: str = "") -> None:
        self.report.add(name, status, detail, fix)
