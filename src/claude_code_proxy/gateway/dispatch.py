"""From a request body to the exchange's plan: route decision and the first translation.

The router is pure and sees only `RequestFacts`; this module gathers them (cheaply, and
only the facts the table's rules use) and translates the request for a target with that
target's provider profile. `long_context` needs the token estimate, which the translation
computes: the request is routed once without it, and re-routed (and translated again) only
when the estimate crosses the threshold.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from claude_code_proxy.config import Settings
from claude_code_proxy.dialects import CHAT, RESPONSES, Dialect, dialect_for
from claude_code_proxy.gateway.exchange import Attempt
from claude_code_proxy.gateway.facts import has_image, has_web_search
from claude_code_proxy.gateway.providers import Provider, Registry
from claude_code_proxy.gateway.router import Decision, RequestFacts, Target, route
from claude_code_proxy.translate.errors import ProxyError, RequestValidationError
from claude_code_proxy.translate.options import TranslatedRequest

#: Rules `long_context` comes before: only these may be overridden by the estimate.
_BELOW_LONG_CONTEXT = frozenset({"image", "web_search", "opus", "sonnet", "haiku", "default"})


class Dispatcher:
    def __init__(self, settings: Settings, registry: Registry) -> None:
        self.settings = settings
        self.registry = registry
        self.table = registry.gateway.routing

    def decide(self, body: Any, tokens: int = 0) -> Decision:
        """The route for this body (a missing model is left for the translation to refuse)."""
        model = body.get("model") if isinstance(body, dict) else None
        if not isinstance(model, str) or not model:
            return Decision((Target(self.registry.first.name, ""),), "passthrough")
        table = self.table
        facts = RequestFacts(
            model,
            tokens,
            has_image=bool(table.image) and has_image(body),
            has_web_search=bool(table.web_search) and has_web_search(body),
        )
        return route(table, facts)

    def plan(
        self, body: Any, session_id: str | None, documents: Mapping[str, str] | None = None
    ) -> tuple[Decision, Attempt]:
        """`documents`: the text of the body's base64 PDFs, extracted beforehand (by data)."""
        decision = self.decide(body)
        first = self.attempt(body, decision.first, session_id, documents)
        long_context = self.table.long_context
        if long_context is not None and decision.rule in _BELOW_LONG_CONTEXT:
            tokens = first.translated.estimated_input_tokens
            if tokens > long_context.above_tokens:
                decision = self.decide(body, tokens)
                if decision.first != first.target:
                    first = self.attempt(body, decision.first, session_id, documents)
        return decision, first

    def api_setting(self, provider: Provider) -> str:
        """The provider's `api`, or UPSTREAM_API when the provider leaves it to "auto"."""
        return provider.api if provider.api != "auto" else self.settings.upstream_api

    def attempt(
        self,
        body: Any,
        target: Target,
        session_id: str | None,
        documents: Mapping[str, str] | None = None,
    ) -> Attempt:
        """The request translated for this target's provider, model and dialect."""
        provider = self.registry.provider_of(target)
        profile = provider.profile(target.model)
        options = profile.options(max_tokens_limit=self.settings.max_tokens_limit)
        setting = self.api_setting(provider)
        dialect = dialect_for(profile, setting)

        def translate(chosen: Dialect) -> TranslatedRequest:
            return chosen.translate_request(
                body,
                upstream_model=target.model,
                options=options,
                session_id=session_id,
                documents=documents,
            )

        try:
            translated = translate(dialect)
        except RequestValidationError as exc:
            raise ProxyError(400, "invalid_request_error", str(exc)) from None
        switch = partial(translate, RESPONSES) if dialect is CHAT and setting == "auto" else None
        return Attempt(target, provider, translated, profile, dialect=dialect, switch=switch)

    def retranslate(
        self,
        attempt: Attempt,
        body: dict[str, Any],
        *,
        session_id: str | None,
        documents: Mapping[str, str] | None = None,
    ) -> TranslatedRequest:
        """A web search turn's follow-up body, translated like the attempt that served the
        turn (its provider's profile, its model, its current dialect)."""
        options = attempt.profile.options(max_tokens_limit=self.settings.max_tokens_limit)
        return attempt.dialect.translate_request(
            body,
            upstream_model=attempt.target.model,
            options=options,
            session_id=session_id,
            documents=documents,
        )
