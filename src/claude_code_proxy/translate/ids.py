"""Identifiers in the shapes Anthropic clients expect, and the tool-call id codec.

The codec (`client_tool_id` / `upstream_call_id`) carries an upstream's tool-call id inside the
id the client sees, so the upstream gets its own id back byte for byte on later turns while the
proxy stays stateless. The format and the reasons for it are in docs/tool-ids.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
import string
from typing import Literal

_BASE62 = string.digits + string.ascii_letters
# fullmatch only: `$` would also accept a trailing newline.
_TOOL_ID_RE = re.compile(r"[A-Za-z0-9_-]+")
# OpenAI's function-name pattern; Anthropic allows the same set, MCP servers sometimes more.
_TOOL_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TOOL_NAME_CHAR_RE = re.compile(r"[^A-Za-z0-9_-]")
# OpenAI rejects tool_call ids longer than 40 characters.
_MAX_UPSTREAM_TOOL_ID = 40
_MISTRAL_ID_RE = re.compile(r"[A-Za-z0-9]{9}")

# Client ids that carry an upstream id: `toolu_` + 8 nonce + 4 check characters (base62), then
# `_` and the upstream id as it is, or `-` and the base64url of its UTF-8 (docs/tool-ids.md).
CLIENT_TOOL_ID_PREFIX = "toolu_"
_NONCE_LENGTH = 8
_CHECK_LENGTH = 4
_AS_IS = "_"
_ENCODED = "-"
# Longer upstream ids are not carried: the client gets a plain fresh id instead.
MAX_CARRIED_ID = 256
_CARRIER_RE = re.compile(
    rf"toolu_([A-Za-z0-9]{{{_NONCE_LENGTH}}})([A-Za-z0-9]{{{_CHECK_LENGTH}}})([_-])([A-Za-z0-9_-]+)"
)

SERVER_TOOL_ID_PREFIX = "srvtoolu_"
_SERVER_ID_RE = re.compile(r"[A-Za-z0-9_]+")

ToolIdStyle = Literal["default", "mistral"]


def _random_base62(length: int) -> str:
    """One getrandom call instead of one per character (ids are minted per request)."""
    number = int.from_bytes(secrets.token_bytes(length), "big")  # 8 bits ≥ log2(62) each
    chars = []
    for _ in range(length):
        number, rest = divmod(number, 62)
        chars.append(_BASE62[rest])
    return "".join(chars)


def new_message_id() -> str:
    """A fresh `msg_…` id, as the Messages API mints them."""
    return "msg_" + _random_base62(24)


def new_tool_use_id() -> str:
    """A fresh `toolu_…` id: upstream ids are never trusted to be unique or well-formed."""
    return "toolu_" + _random_base62(24)


def new_server_tool_id() -> str:
    """A fresh `srvtoolu_…` id for a server tool call the proxy runs (web search)."""
    return SERVER_TOOL_ID_PREFIX + _random_base62(24)


def server_tool_id(client_id: str) -> str:
    """The `srvtoolu_…` id of a call the proxy runs (web search), made from the `toolu_…` id
    the call got: it keeps the upstream id that one carries, when the srvtoolu pattern
    (`^srvtoolu_[a-zA-Z0-9_]+$`, no `-`) allows; otherwise a fresh id."""
    rest = client_id.removeprefix(CLIENT_TOOL_ID_PREFIX)
    if rest != client_id and _SERVER_ID_RE.fullmatch(rest):
        return SERVER_TOOL_ID_PREFIX + rest
    return new_server_tool_id()


def server_call_client_id(server_id: str) -> str:
    """The `toolu_…` id a `server_tool_id` was made from, so its upstream id comes back."""
    if server_id.startswith(SERVER_TOOL_ID_PREFIX):
        return CLIENT_TOOL_ID_PREFIX + server_id[len(SERVER_TOOL_ID_PREFIX) :]
    return server_id


def new_request_id() -> str:
    return "req_" + _random_base62(24)


def is_valid_tool_id(value: object) -> bool:
    return isinstance(value, str) and _TOOL_ID_RE.fullmatch(value) is not None


def _digest62(text: str, length: int) -> str:
    """`length` base62 characters of the SHA-256 of `text` (deterministic, not secret)."""
    number = int.from_bytes(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest(), "big")
    chars = []
    for _ in range(length):
        number, rest = divmod(number, 62)
        chars.append(_BASE62[rest])
    return "".join(chars)


def client_tool_id(upstream_id: str | None, salt: str) -> str:
    """The `tool_use.id` the client sees for a tool call the upstream named `upstream_id`.

    Matches `^[A-Za-z0-9_-]+$` whatever the upstream id is. `salt` must differ for every tool
    call the proxy reports (the message id and the call's position), so that an upstream that
    says `call_0` on every turn still gives the client ids unique across the conversation;
    the same arguments always give the same id. Without an upstream id (or with one longer
    than MAX_CARRIED_ID characters) the id carries nothing and looks like Anthropic's.
    """
    nonce = _digest62(f"{salt}\x00{upstream_id or ''}", _NONCE_LENGTH + 24)
    if not upstream_id or len(upstream_id) > MAX_CARRIED_ID:
        return CLIENT_TOOL_ID_PREFIX + nonce[_NONCE_LENGTH:]
    nonce = nonce[:_NONCE_LENGTH]
    if _TOOL_ID_RE.fullmatch(upstream_id):
        kind, payload = _AS_IS, upstream_id
    else:
        raw = upstream_id.encode("utf-8", "surrogatepass")
        kind, payload = _ENCODED, base64.urlsafe_b64encode(raw).decode().rstrip("=")
    check = _digest62(nonce + kind + payload, _CHECK_LENGTH)
    return f"{CLIENT_TOOL_ID_PREFIX}{nonce}{check}{kind}{payload}"


def carried_upstream_id(client_id: str) -> str | None:
    """The upstream id a `client_tool_id` carries, or None for any other id.

    The check characters make a client-invented id that happens to have the same shape a
    one-in-14-million accident, not a misreading.
    """
    match = _CARRIER_RE.fullmatch(client_id)
    if match is None:
        return None
    nonce, check, kind, payload = match.groups()
    if _digest62(nonce + kind + payload, _CHECK_LENGTH) != check:
        return None
    if kind == _AS_IS:
        return payload
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        return raw.decode("utf-8", "surrogatepass") or None
    except (binascii.Error, ValueError):
        return None


def upstream_call_id(client_id: object, style: ToolIdStyle = "default") -> str:
    """The tool-call id to send upstream for the client's `tool_use.id` / `tool_use_id`.

    An id from `client_tool_id` gives back the upstream's own id, byte for byte. Any other id
    (the client invented it, or the proxy minted it without an upstream id) maps
    deterministically to one the upstream accepts, so a call and its result always agree.
    Mistral accepts only 9 alphanumerics: a carried id of another shape is mapped too.
    """
    text = client_id if isinstance(client_id, str) else str(client_id)
    carried = carried_upstream_id(text)
    if style == "mistral":
        if carried is not None and _MISTRAL_ID_RE.fullmatch(carried):
            return carried
        return mistral_tool_id(text)
    return carried if carried is not None else upstream_tool_id(text)


def mistral_tool_id(anthropic_id: object) -> str:
    """Mistral accepts only ids of exactly 9 alphanumerics: a deterministic digest of ours."""
    text = anthropic_id if isinstance(anthropic_id, str) else str(anthropic_id)
    number = int.from_bytes(
        hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:8], "big"
    )
    chars = []
    for _ in range(9):
        number, rest = divmod(number, 62)
        chars.append(_BASE62[rest])
    return "".join(chars)


def upstream_tool_id(anthropic_id: object) -> str:
    """Map a client-side tool_use id to one every OpenAI-compatible upstream accepts.

    Deterministic, so a tool call and its result always carry the same id across turns.
    """
    text = anthropic_id if isinstance(anthropic_id, str) else str(anthropic_id)
    if text and len(text) <= _MAX_UPSTREAM_TOOL_ID and _TOOL_ID_RE.fullmatch(text):
        return text
    return "call_" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def upstream_tool_name(name: str) -> str:
    """`name` if OpenAI-style servers accept it, else a legal stand-in, stable per name."""
    if _TOOL_NAME_RE.fullmatch(name):
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{_TOOL_NAME_CHAR_RE.sub('_', name)[:55]}_{digest}"
