"""Claude Code's own settings files, which override the environment and `run`."""

from __future__ import annotations

from claude_code_proxy.doctor.context import Context
from claude_code_proxy.launcher import find_settings_overrides


class ClaudeSettingsCheck:
    """A settings file with ANTHROPIC_BASE_URL sends Claude Code past the proxy."""

    def run(self, ctx: Context) -> None:
        overrides, problems = find_settings_overrides(ctx.environ)
        for override in overrides:
            if override.bypasses_proxy():
                ctx.add(
                    "Claude Code settings",
                    "FAIL",
                    f"{override.describe()}: Claude Code would call Anthropic, not this proxy",
                    f"remove ANTHROPIC_BASE_URL from {override.shown_path()} (or point it at "
                    "this proxy); Claude Code applies it over the environment and over `run`",
                )
                continue
            ctx.add(
                "Claude Code settings",
                "WARN",
                override.describe(),
                "Claude Code applies this over the environment (and over `run`): remove it "
                "unless it points at this proxy",
            )
        for problem in problems:
            ctx.add("Claude Code settings", "WARN", problem, "fix or remove the file")
        if not overrides and not problems:
            ctx.add(
                "Claude Code settings", "PASS", "no settings file overrides ANTHROPIC_* variables"
            )
