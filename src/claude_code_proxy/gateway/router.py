"""Which targets serve a request, and the rule that decided. Pure: no I/O, no globals.

Order of decision (docs/routing.md):
1. `[models]` exact id, 2. `[models]` glob (in file order), 3. a `provider/model` id whose
provider exists, 4. the task rules: `long_context` (the proxy's own token estimate above
`above_tokens`), `image` (unless the tier's target is known to read images), `web_search`,
5. the tier by id (haiku/sonnet/opus), 6. `default` for any other claude id; 7. any other
id passes through to the first provider.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class Target:
    """One upstream model on one provider: `provider/model` in the configuration."""

    provider: str
    model: str

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}"

    @classmethod
    def parse(cls, text: str) -> Target:
        """`openrouter/openai/gpt-5` is model `openai/gpt-5` on provider `openrouter`."""
        provider, sep, model = text.partition("/")
        if not sep or not provider.strip() or not model.strip() or text != text.strip():
            raise ValueError(f"{text!r} is not a target: expected provider/model")
        return cls(provider, model)


Targets = tuple[Target, ...]


@dataclass(frozen=True)
class LongContext:
    above_tokens: int
    targets: Targets


@dataclass(frozen=True)
class RoutingTable:
    """The resolved `[routes]` and `[models]` tables (or the environment's tiers)."""

    providers: tuple[str, ...]
    models: tuple[tuple[str, Targets], ...] = ()
    opus: Targets = ()
    sonnet: Targets = ()
    haiku: Targets = ()
    default: Targets = ()
    long_context: LongContext | None = None
    image: Targets = ()
    web_search: Targets = ()
    #: Whether a `provider/model` client id goes to that provider (off for the environment's
    #: single provider, whose client ids always passed through unchanged).
    provider_ids: bool = True
    #: Targets known to read images: a tier served by one of them keeps its images (the
    #: `image` rule is for text-only and unknown models).
    vision: frozenset[Target] = frozenset()
    _exact: dict[str, Targets] = field(init=False, repr=False, compare=False)
    _globs: tuple[tuple[str, Targets], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        exact = {k: v for k, v in self.models if not GLOB_CHARS.intersection(k)}
        globs = tuple((k, v) for k, v in self.models if GLOB_CHARS.intersection(k))
        object.__setattr__(self, "_exact", exact)
        object.__setattr__(self, "_globs", globs)

    def tier(self, name: str) -> Targets:
        """A tier's targets; an unset tier falls back to `default`."""
        targets: Targets = getattr(self, name)
        return targets or self.default

    def reads_images(self, tier: str) -> bool:
        """The tier's first target is known to read images (unknown counts as not)."""
        targets = self.tier(tier)
        return bool(targets) and targets[0] in self.vision


@dataclass(frozen=True)
class RequestFacts:
    """What the router may know about a request: nothing that needs I/O."""

    model: str
    tokens: int = 0
    has_image: bool = False
    has_web_search: bool = False


@dataclass(frozen=True)
class Decision:
    targets: Targets
    rule: str

    @property
    def first(self) -> Target:
        return self.targets[0]


def tier_of(model: str) -> str | None:
    """haiku / sonnet / opus by id, `default` for any other claude id, None otherwise."""
    lowered = model.lower()
    if "haiku" in lowered:
        return "haiku"
    if "sonnet" in lowered:
        return "sonnet"
    if "opus" in lowered:
        return "opus"
    if lowered.startswith(("claude", "anthropic")):
        return "default"
    return None


def route(table: RoutingTable, facts: RequestFacts) -> Decision:
    """The ordered targets for this request and the name of the rule that chose them."""
    model = facts.model
    exact = table._exact.get(model)
    if exact is not None:
        return Decision(exact, f"models:{model}")
    for pattern, targets in table._globs:
        if fnmatch.fnmatchcase(model, pattern):
            return Decision(targets, f"models:{pattern}")
    if table.provider_ids:
        provider, sep, rest = model.partition("/")
        if sep and rest and provider in table.providers:
            return Decision((Target(provider, rest),), "provider")
    tier = tier_of(model)
    if tier is not None:
        lc = table.long_context
        if lc is not None and facts.tokens > lc.above_tokens:
            return Decision(lc.targets, "long_context")
        if facts.has_image and table.image and not table.reads_images(tier):
            return Decision(table.image, "image")
        if facts.has_web_search and table.web_search:
            return Decision(table.web_search, "web_search")
        if tier != "default" and getattr(table, tier):
            return Decision(getattr(table, tier), tier)
        if table.default:
            return Decision(table.default, "default")
    return Decision((Target(table.providers[0], model),), "passthrough")
