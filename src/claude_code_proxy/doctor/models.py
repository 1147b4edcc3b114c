"""Every mapped model against the provider's list: a typo shows here, not mid-session."""

from __future__ import annotations

from claude_code_proxy.doctor.context import Context
from claude_code_proxy.doctor.model_list import contains_model

#: (variable, Settings attribute, a Claude Code model id that maps to it)
MODEL_VARS = (
    ("BIG_MODEL", "big_model", "claude-opus-4-5"),
    ("MIDDLE_MODEL", "middle_model", "claude-sonnet-4-5"),
    ("SMALL_MODEL", "small_model", "claude-haiku-4-5"),
)
MAX_LISTED = 25


def mapped_models(ctx: Context) -> list[tuple[str, str]]:
    """(label, upstream model) for BIG/MIDDLE/SMALL and any MODEL_MAP entries (or the
    routes of one provider of a configuration file)."""
    if ctx.models is not None:
        return list(ctx.models)
    mapped = [(var, str(getattr(ctx.settings, attr))) for var, attr, _ in MODEL_VARS]
    mapped.extend((f"MODEL_MAP {k}", v) for k, v in ctx.settings.model_map.items())
    return mapped


class ModelsCheck:
    """One row per mapped model; a missing one is remembered so no chat check is wasted on it."""

    def run(self, ctx: Context, available: list[str] | None) -> None:
        base = ctx.settings.openai_base_url
        for label, model in mapped_models(ctx):
            name = f"model {label}"
            if ctx.auth_failed:
                ctx.add(name, "SKIP", f"'{model}': not checked (the key was rejected)")
            elif ctx.base_url_doubled and not available:
                ctx.add(name, "SKIP", f"'{model}': not checked (fix OPENAI_BASE_URL first)")
            elif ctx.settings.azure_api_version is not None:
                ctx.add(name, "INFO", f"'{model}': Azure deployments are checked by chatting")
            elif not available:
                ctx.add(
                    name, "INFO", f"'{model}': the provider lists no models; checked by chatting"
                )
            elif contains_model(available, model):
                ctx.add(name, "PASS", f"{label} '{model}' is available")
            else:
                ctx.missing_models.add(model)
                shown = ", ".join(available[:MAX_LISTED])
                if len(available) > MAX_LISTED:
                    shown += f" … and {len(available) - MAX_LISTED} more"
                fix = (
                    f"set {label.split()[0]} to one of the available models"
                    if ctx.models is None
                    else f"change {label} in the configuration file to an available model"
                )
                if label == "MIDDLE_MODEL" and not ctx.environ.get("MIDDLE_MODEL"):
                    fix += "; MIDDLE_MODEL is unset, so it follows BIG_MODEL"
                if ctx.port == 11434:
                    fix += f", or `ollama pull {model}`"
                ctx.add(
                    name,
                    "FAIL",
                    f"{label} '{model}' not found at {base}: available models are {shown}",
                    fix,
                )
