"""The incremental JSON grammar check behind streamed tool arguments (F.5, A.10).

`JsonPrefixScanner` must agree with a real JSON parser on every input, whatever the fragment
boundaries, and its safe point must always close into valid JSON; `complete_prefix` extends
text already streamed so that the whole parses as the repaired arguments.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from claude_code_proxy.translate.tool_args import JsonPrefixScanner, complete_prefix

MUTATIONS = list('{}[],:"\\ 0123456789.-+eEtrufalsnxu\n\t')
SCALARS = [0, -1, 12, 1.5, -2.5e-3, 1e21, True, False, None, "", 'a"b\\c\n\u00e9\U0001f600']


def random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 3 or roll < 0.35:
        return rng.choice([*SCALARS, "x" * rng.randint(0, 12)])
    if roll < 0.65:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {f"k{rng.randint(0, 9)}": random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def random_text(rng: random.Random) -> str:
    value = {f"k{i}": random_value(rng, 1) for i in range(rng.randint(0, 4))}
    text = json.dumps(value, ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, 1]))
    if rng.random() < 0.6:
        chars = list(text)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(chars) + 1)
            roll = rng.random()
            if roll < 0.4 and chars:
                del chars[min(at, len(chars) - 1)]
            elif roll < 0.8:
                chars.insert(at, rng.choice(MUTATIONS))
            elif chars:
                chars[min(at, len(chars) - 1)] = rng.choice(MUTATIONS)
        text = "".join(chars)
    return text


def scan(text: str, rng: random.Random) -> tuple[JsonPrefixScanner, int]:
    scanner, consumed, at = JsonPrefixScanner(), 0, 0
    while at < len(text) and scanner.valid and not scanner.complete:
        size = rng.randint(1, 6)
        consumed += scanner.feed(text[at : at + size])
        at += size
    return scanner, consumed


def parses_as_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


@pytest.mark.parametrize("seed", range(4))
def test_scanner_agrees_with_the_json_parser(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(2500):
        text = random_text(rng)
        scanner, consumed = scan(text, rng)
        assert consumed == scanner.pos
        whole = scanner.valid and scanner.complete and not text[scanner.pos :].strip()
        assert whole == parses_as_object(text), text
        if scanner.started:
            closed = text[: scanner.safe] + scanner.closing_suffix()
            assert parses_as_object(closed), (text, closed)


@pytest.mark.parametrize("seed", range(2))
def test_every_prefix_of_valid_arguments_is_valid_and_closes(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(60):
        text = json.dumps({f"k{i}": random_value(rng, 1) for i in range(3)})
        for cut in range(len(text)):
            scanner = JsonPrefixScanner()
            assert scanner.feed(text[:cut]) == cut
            assert scanner.valid
            assert scanner.safe <= cut
            if scanner.started:
                assert parses_as_object(text[: scanner.safe] + scanner.closing_suffix())


@pytest.mark.parametrize(
    ("text", "bad_at"),
    [
        ('{"a": 1,}', 8),
        ('{"a": 1 "b": 2}', 8),
        ('{"a": "x\ny"}', 8),
        ('{"a":}', 5),
        ("{,}", 1),
        ('{"a":nul}', 8),
        ('{"a":01}', 6),
        ('{"a":"\\q"}', 7),
        ('{"a":tru e}', 8),
        ("{1:2}", 1),
        ('{"a" "b"}', 5),
        ('{"a": [1 2]}', 9),
        ('{"a": -}', 7),
        ('{"a": 1.}', 8),
        ('{"a": 1e}', 8),
        ('{"a": "\\u12G4"}', 11),
    ],
)
def test_scanner_stops_at_the_first_character_json_forbids(text: str, bad_at: int) -> None:
    for size in (1, len(text)):
        scanner = JsonPrefixScanner()
        consumed = sum(scanner.feed(text[i : i + size]) for i in range(0, len(text), size))
        assert not scanner.valid
        assert consumed == scanner.pos == bad_at


@pytest.mark.parametrize(
    ("prefix", "safe"),
    [
        ('{"x":', '{"x":'.index('"')),  # the key waits for its value
        ('{"x": 1,', len('{"x": 1')),  # a comma waits for what follows
        ('{"x": tr', 1),
        ('{"x": "ab', len('{"x": "ab')),  # string values stream as they come
        ('{"x": "ab\\', len('{"x": "ab')),  # an escape waits for its end
        ('{"x": [1, {', len('{"x": [1, {')),
    ],
)
def test_safe_point_holds_back_only_what_cannot_be_closed(prefix: str, safe: int) -> None:
    scanner = JsonPrefixScanner()
    scanner.feed(prefix)
    assert scanner.safe == safe


@pytest.mark.parametrize(
    ("sent", "target"),
    [
        ("{", {"a": 1, "b": [2]}),
        ('{"a": 1', {"a": 1, "b": 2}),
        ('{"a": "par', {"a": "partial\nvalue", "b": True}),
        ('{"a": {"b": [1', {"a": {"b": [1, 2]}, "c": None}),
        ('{"keep": 1, "a": "x', {"keep": 1, "a": "y"}),
        ("", {"a": 1}),
    ],
)
def test_complete_prefix_extends_what_was_sent_into_the_target(
    sent: str, target: dict[str, Any]
) -> None:
    scanner = JsonPrefixScanner()
    scanner.feed(sent)
    assert scanner.safe == len(sent)
    whole = sent + complete_prefix(sent, scanner.closing_suffix(), target)
    assert json.loads(whole) == target


def test_complete_prefix_repeats_no_member_that_already_matches() -> None:
    scanner = JsonPrefixScanner()
    scanner.feed('{"a": 1, "b": true')
    suffix = complete_prefix('{"a": 1, "b": true', scanner.closing_suffix(), {"a": 1, "b": 1})
    assert suffix == ',"b":1}'  # true is not 1 in JSON, even though True == 1 in Python
