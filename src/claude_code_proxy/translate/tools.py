"""Anthropic tool definitions and tool_choice, for upstreams that take function tools.

Client tools (custom, and Anthropic-defined ones the client executes, like bash or the text
editor) become function schemas; the web_search server tool becomes the `web_search` function
the proxy answers itself; other server tools the upstream cannot run are not forwarded.
"""

from __future__ import annotations

import logging
from typing import Any

from claude_code_proxy.translate.content import Stats
from claude_code_proxy.translate.errors import RequestValidationError
from claude_code_proxy.translate.ids import upstream_tool_name
from claude_code_proxy.translate.options import TranslationOptions
from claude_code_proxy.translate.schema import clean_schema
from claude_code_proxy.translate.web_search import (
    FUNCTION_NAME,
    WebSearchTool,
    function_spec,
    is_web_search_tool,
    web_search_tool,
)

logger = logging.getLogger(__name__)

# Anthropic tool types that name server-side tools the upstream cannot execute.
SERVER_TOOL_PREFIXES = (
    "web_search",
    "web_fetch",
    "code_execution",
    "tool_search_tool",
    "mcp_toolset",
    "advisor",
)
_BASH_SCHEMA = {
    "type": "object",
    "properties": {
        "command": {"type": "string", "description": "The shell command to run."},
        "restart": {"type": "boolean", "description": "Restart the shell session."},
    },
}
# File-editing inputs the text editor and memory tools share.
_FILE_EDIT_FIELDS = {
    "path": {"type": "string"},
    "view_range": {"type": "array", "items": {"type": "integer"}},
    "file_text": {"type": "string"},
    "old_str": {"type": "string"},
    "new_str": {"type": "string"},
    "insert_line": {"type": "integer"},
}
_TEXT_EDITOR_SCHEMA = {
    "type": "object",
    "properties": {
        "command": {
            "type": "string",
            "enum": ["view", "create", "str_replace", "insert", "undo_edit"],
        },
        **_FILE_EDIT_FIELDS,
    },
    "required": ["command", "path"],
}
_MEMORY_SCHEMA = {
    "type": "object",
    "properties": {
        "command": {
            "type": "string",
            "enum": ["view", "create", "str_replace", "insert", "delete", "rename"],
        },
        **_FILE_EDIT_FIELDS,
        "insert_text": {"type": "string"},
        "old_path": {"type": "string"},
        "new_path": {"type": "string"},
    },
    "required": ["command"],
}
_COMPUTER_SCHEMA = {
    "type": "object",
    "properties": {
        "action": {
            "type": "string",
            "enum": [
                "screenshot", "left_click", "right_click", "middle_click", "double_click",
                "triple_click", "mouse_move", "left_click_drag", "left_mouse_down",
                "left_mouse_up", "scroll", "type", "key", "hold_key", "wait", "cursor_position",
                "zoom",
            ],
        },
        "coordinate": {"type": "array", "items": {"type": "integer"}},
        "start_coordinate": {"type": "array", "items": {"type": "integer"}},
        "text": {"type": "string"},
        "scroll_direction": {"type": "string", "enum": ["up", "down", "left", "right"]},
        "scroll_amount": {"type": "integer"},
        "duration": {"type": "number"},
        "region": {"type": "array", "items": {"type": "integer"}},
    },
    "required": ["action"],
}  # fmt: skip
# Anthropic-defined client tools: the client executes them, so a function schema works.
CLIENT_TOOL_SCHEMAS = {
    "bash": _BASH_SCHEMA,
    "text_editor": _TEXT_EDITOR_SCHEMA,
    "memory": _MEMORY_SCHEMA,
    "computer": _COMPUTER_SCHEMA,
}


def tool_name(name: str, renamed: dict[str, str]) -> str:
    """The upstream's name for a client tool; each change is recorded to be mapped back."""
    legal = upstream_tool_name(name)
    if legal != name:
        renamed[name] = legal
    return legal


def loaded_tools(messages: list[Any]) -> set[str]:
    """Names of deferred tools the conversation has loaded: found by tool search, or used."""
    names: set[str] = set()
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for block in content:
            if not isinstance(block, dict):
                continue
            kind = block.get("type")
            if kind == "tool_use" and isinstance(block.get("name"), str):
                names.add(block["name"])
            elif kind == "tool_result" and isinstance(block.get("content"), list):
                for item in block["content"]:
                    if isinstance(item, dict) and item.get("type") == "tool_reference":
                        name = item.get("tool_name") or item.get("name")
                        if isinstance(name, str):
                            names.add(name)
    return names


def function_tools(
    tools: Any,
    stats: Stats,
    options: TranslationOptions,
    *,
    loaded: set[str],
    renamed: dict[str, str],
) -> tuple[list[dict[str, Any]], set[str]]:
    """Chat Completions function tools, and the names of every tool the client declared."""
    specs, declared = tool_specs(tools, stats, options, loaded=loaded, renamed=renamed)
    return [{"type": "function", "function": spec} for spec in specs], declared


def tool_specs(
    tools: Any,
    stats: Stats,
    options: TranslationOptions,
    *,
    loaded: set[str],
    renamed: dict[str, str],
) -> tuple[list[dict[str, Any]], set[str]]:
    """The tools to forward as dialect-neutral `{name, parameters, description?, strict?}`
    specs, and the names of every tool the client declared."""
    if tools is None:
        return [], set()
    if not isinstance(tools, list):
        raise RequestValidationError("tools: must be a list")
    out: list[dict[str, Any]] = []
    declared: set[str] = set()
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise RequestValidationError(f"tools.{index}: must be an object")
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise RequestValidationError(f"tools.{index}.name: field required")
        declared.add(name)
        kind = tool.get("type")
        if tool.get("defer_loading") is True and name not in loaded:
            continue  # Not in the model's context until tool search returns a reference to it.
        schema: Any
        if kind in (None, "custom"):
            schema = tool.get("input_schema")
            if schema is None:
                schema = {"type": "object", "properties": {}}
            if not isinstance(schema, dict):
                raise RequestValidationError(f"tools.{index}.input_schema: must be an object")
        elif isinstance(kind, str) and kind.split("_20")[0] in CLIENT_TOOL_SCHEMAS:
            schema = CLIENT_TOOL_SCHEMAS[kind.split("_20")[0]]
        elif is_web_search_tool(tool):
            # The proxy runs this one itself (server_tools/web_search.py).
            if any(
                isinstance(t, dict) and t.get("name") == FUNCTION_NAME and t is not tool
                for t in tools
            ):
                raise RequestValidationError(f"tools: tool names must be unique: {FUNCTION_NAME!r}")
            offered = function_spec(web_search_tool([tool]) or WebSearchTool())
            stats.text_chars += len(offered["description"]) + 200
            out.append(offered)
            continue
        elif isinstance(kind, str) and kind.startswith(SERVER_TOOL_PREFIXES):
            logger.info("server tool %r (%s) is not forwarded: upstreams cannot run it", name, kind)
            continue
        else:
            logger.warning("tool %r of unknown type %r is not forwarded", name, kind)
            continue
        if options.schema_dialect == "gemini":
            schema = clean_schema(schema)
        function: dict[str, Any] = {
            "name": tool_name(name, renamed),
            "parameters": schema,
        }
        description = tool.get("description")
        if isinstance(description, str) and description:
            function["description"] = description
        if tool.get("strict") is True:
            function["strict"] = True
        stats.text_chars += len(name) + len(description or "") + 200
        out.append(function)
    return out, declared


def tool_choice(choice: Any, names: set[str], declared: set[str], renamed: dict[str, str]) -> Any:
    if choice is None:
        return None
    if not isinstance(choice, dict):
        raise RequestValidationError("tool_choice: must be an object")
    kind = choice.get("type")
    if kind == "auto":
        return "auto"
    if kind == "any":
        return "required"
    if kind == "none":
        return "none"
    if kind == "tool":
        name = choice.get("name")
        if not isinstance(name, str) or not name:
            raise RequestValidationError("tool_choice.name: field required for type 'tool'")
        upstream = renamed.get(name, name)
        if upstream in names:
            return {"type": "function", "function": {"name": upstream}}
        if name in declared:
            # A server or deferred tool: forcing a function the upstream cannot see is a 400.
            logger.info("tool_choice names %r, which is not forwarded; using auto", name)
            return "auto"
        raise RequestValidationError(f"tool_choice.name: no tool named {name!r} in tools")
    raise RequestValidationError(
        f"tool_choice.type: must be 'auto', 'any', 'tool' or 'none', got {kind!r}"
    )
