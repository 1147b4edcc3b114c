"""The routing table and a routing decision as text: `claude-code-proxy routes` and the banner.

Pure: the configuration in, lines out. Keys are shown by where they come from, never their
value.
"""

from __future__ import annotations

from claude_code_proxy.config_file import GatewayConfig, ProviderConfig
from claude_code_proxy.gateway.router import Decision, Targets

WIDTH = 13


def targets_text(targets: Targets) -> str:
    """`a/x`, or `a/x, then b/y` for a list with fallbacks."""
    return ", then ".join(str(t) for t in targets)


def provider_line(provider: ProviderConfig) -> str:
    if len(provider.api_keys) > 1:
        keys = f"key pool of {len(provider.api_keys)} ({provider.key_source})"
    elif provider.api_keys:
        keys = f"key from {provider.key_source}"
    else:
        keys = "the client's key is forwarded"
    extras = [keys, f"api {provider.api}"]
    if provider.azure_api_version:
        extras.append(f"Azure api-version {provider.azure_api_version}")
    if provider.max_concurrency:
        extras.append(f"max_concurrency {provider.max_concurrency}")
    if provider.timeout:
        extras.append(f"timeout {provider.timeout:g}s")
    return f"{provider.name:<{WIDTH}} {provider.base_url}  ({'; '.join(extras)})"


def routes_lines(gateway: GatewayConfig) -> list[str]:
    """Every rule in the order the router applies them."""
    table = gateway.routing
    source = gateway.path or "the environment (one provider; no configuration file)"
    lines = [f"configuration  {source}", "providers"]
    lines += [f"  {provider_line(p)}" for p in gateway.providers]
    lines.append("routes, in the order they are decided")
    rows: list[tuple[str, str]] = []
    for pattern, targets in table.models:
        rows.append(("models", f"{pattern} → {targets_text(targets)}"))
    if table.provider_ids:
        names = ", ".join(table.providers)
        rows.append(("provider", f"PROVIDER/MODEL ids go to that provider ({names})"))
    if table.long_context is not None:
        lc = table.long_context
        rows.append(
            ("long_context", f"above {lc.above_tokens} tokens → {targets_text(lc.targets)}")
        )
    if table.image:
        rows.append(
            (
                "image",
                f"requests with images → {targets_text(table.image)}, "
                "unless the tier's target reads images",
            )
        )
    if table.web_search:
        rows.append(("web_search", f"requests with web_search → {targets_text(table.web_search)}"))
    for tier in ("opus", "sonnet", "haiku"):
        own = getattr(table, tier)
        shown = targets_text(own) if own else f"{targets_text(table.default)} (default)"
        rows.append((tier, f"*{tier}* ids → {shown}"))
    rows.append(("default", f"other claude-* ids → {targets_text(table.default)}"))
    rows.append(("passthrough", f"any other id → provider {table.providers[0]}, unchanged"))
    lines += [f"  {rule:<{WIDTH}} {text}" for rule, text in rows]
    windows = gateway.context_windows
    if windows:
        lines.append("context windows")
        lines += [f"  {target} {tokens} tokens" for target, tokens in windows.items()]
    if table.image:  # what the image rule decides by; an unknown model counts as text-only
        known = gateway.vision
        lines.append("image input (from [vision] or the model's profile; others: unknown)")
        lines += [
            f"  {target} {'reads images' if known[target] else 'text only'}"
            for target in gateway.targets()
            if target in known
        ]
    return lines


def decision_lines(model: str, decision: Decision) -> list[str]:
    """Where one request goes, and the rule that decided."""
    lines = [f"{model} → {targets_text(decision.targets)}", f"  rule: {decision.rule}"]
    if len(decision.targets) > 1:
        lines.append(
            "  the later targets are tried in order when one fails before the reply starts"
        )
    return lines
