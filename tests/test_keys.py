"""Key pools: rotation, rest after a 429 (retry-after honoured), bad keys logged once by hash."""

from __future__ import annotations

import logging

import pytest

from claude_code_proxy.gateway.keys import DEFAULT_REST, KeyPool
from claude_code_proxy.gateway.pool import key_id


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_keys_are_used_in_turn() -> None:
    pool = KeyPool(["k1", "k2", "k3"])
    assert [pool.pick() for _ in range(7)] == ["k1", "k2", "k3", "k1", "k2", "k3", "k1"]


def test_duplicates_do_not_skew_the_rotation() -> None:
    pool = KeyPool(["k1", "k1", "k2"])
    assert len(pool) == 2
    assert [pool.pick() for _ in range(4)] == ["k1", "k2", "k1", "k2"]


def test_empty_pool_is_refused() -> None:
    with pytest.raises(ValueError):
        KeyPool([])


def test_a_rate_limited_key_rests_for_its_retry_after() -> None:
    clock = Clock()
    pool = KeyPool(["k1", "k2"], clock=clock)
    assert pool.pick() == "k1"
    pool.rest("k1", 30)
    assert [pool.pick() for _ in range(3)] == ["k2", "k2", "k2"]
    clock.now += 29.9
    assert pool.pick() == "k2"
    clock.now += 0.2
    assert [pool.pick() for _ in range(2)] == ["k1", "k2"]


def test_rest_without_retry_after_uses_the_default() -> None:
    clock = Clock()
    pool = KeyPool(["k1"], clock=clock)
    pool.rest("k1")
    assert pool.pick() is None
    assert pool.ready_in() == pytest.approx(DEFAULT_REST)
    clock.now += DEFAULT_REST
    assert pool.pick() == "k1"


def test_all_keys_resting_reports_the_shortest_wait() -> None:
    clock = Clock()
    pool = KeyPool(["k1", "k2"], clock=clock)
    pool.rest("k1", 20)
    pool.rest("k2", 8)
    assert pool.pick() is None
    assert pool.ready_in() == pytest.approx(8)


def test_bad_key_is_skipped_for_good_and_logged_once_by_hash(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "sk-live-very-secret-key-0001"
    pool = KeyPool([secret, "k2"], provider="openai")
    with caplog.at_level(logging.WARNING, logger="claude_code_proxy.gateway.keys"):
        pool.mark_bad(secret)
        pool.mark_bad(secret)
    assert [pool.pick() for _ in range(3)] == ["k2", "k2", "k2"]
    assert pool.is_bad(secret) and pool.usable == 1
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert key_id(secret) in warnings[0] and "openai" in warnings[0]
    assert secret not in caplog.text


def test_every_key_bad_means_no_key_and_no_wait() -> None:
    pool = KeyPool(["k1"])
    pool.mark_bad("k1")
    assert pool.pick() is None
    assert pool.ready_in() is None


def test_rest_logs_the_hash_never_the_key(caplog: pytest.LogCaptureFixture) -> None:
    secret = "sk-live-another-secret-0002"
    pool = KeyPool([secret])
    with caplog.at_level(logging.INFO, logger="claude_code_proxy.gateway.keys"):
        pool.rest(secret, 3)
    assert key_id(secret) in caplog.text and secret not in caplog.text
