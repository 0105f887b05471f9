"""MarketClock: the Market's time from Date headers (whole seconds), as bounds."""

from __future__ import annotations

from email.utils import formatdate

from ymsync.market.clock import MarketClock


class FakeLocal:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def reply(clock: MarketClock, local: FakeLocal, market_offset: float, rtt: float = 0.02) -> None:
    sent = local.t
    local.t += rtt / 2
    header = formatdate(local.t + market_offset, usegmt=True)  # the Market's clock, whole seconds
    local.t += rtt / 2
    clock.observe(header, local.t, sent)
    local.t += 0.137  # replies at varied sub-second phases


def test_no_reply_yet_means_the_local_clock() -> None:
    local = FakeLocal(1_800_000_000.5)
    clock = MarketClock(local)
    assert clock.bounds() is None and clock.now() == local.t
    assert clock.stamp_cap_ms() == clock.stamp_cap_ms(strict=True) == int(local.t * 1000)


def test_a_local_clock_ten_seconds_ahead_caps_stamps_at_the_market_lower_bound() -> None:
    local = FakeLocal(1_800_000_000.25)
    clock = MarketClock(local)
    for _ in range(20):
        reply(clock, local, -10.0)
    lower, upper = clock.bounds()
    assert -10.0 - 0.2 <= lower <= -10.0 <= upper <= -10.0 + 0.5
    true_market_ms = int((local.t - 10.0) * 1000)
    assert clock.stamp_cap_ms() <= true_market_ms  # never "in the future"
    assert clock.stamp_cap_ms() >= true_market_ms - 200  # and not far behind once it has samples
    assert clock.seconds_until(local.t - 10.0 + 5) >= 5  # a 420's Until on the Market's clock


def test_an_agreeing_local_clock_keeps_its_stamps() -> None:
    local = FakeLocal(1_800_000_000.75)
    clock = MarketClock(local)
    for _ in range(5):
        reply(clock, local, 0.0)
    lower, upper = clock.bounds()
    assert lower <= 0.0 <= upper
    assert clock.stamp_cap_ms() == int(local.t * 1000)
    assert clock.stamp_cap_ms(strict=True) <= int(local.t * 1000)


def test_old_samples_are_forgotten() -> None:
    local = FakeLocal(1_800_000_000.0)
    clock = MarketClock(local)
    reply(clock, local, 30.0)
    local.t += 601
    assert clock.bounds() is None
