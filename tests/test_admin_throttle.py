"""Wrong admin tokens are slowed down per address, and the slowing ends when the minute does
(the HTTP side is in test_admin_api.py and test_admin_page.py)."""

from __future__ import annotations

from gemgate.admin.auth import LoginThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_five_wrong_tokens_a_minute_then_a_wait_until_the_oldest_is_a_minute_old() -> None:
    clock = Clock()
    throttle = LoginThrottle(limit=5, window=60.0, clock=clock)
    for _ in range(4):
        throttle.failed("10.0.0.1")
        clock.now += 10
    assert throttle.wait("10.0.0.1") == 0  # four: still free to try
    throttle.failed("10.0.0.1")
    assert throttle.wait("10.0.0.1") == 20.0  # the first failure leaves the window in 20 s
    assert throttle.wait("10.0.0.2") == 0  # another address is not held back
    clock.now += 20
    assert throttle.wait("10.0.0.1") == 0
    throttle.failed("10.0.0.1")
    assert throttle.wait("10.0.0.1") == 10.0  # the second-oldest now decides
    clock.now += 3600
    assert throttle.wait("10.0.0.1") == 0


def test_a_spray_from_many_addresses_keeps_memory_bounded() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    for n in range(10_001):
        throttle.failed(f"10.{n // 65536}.{n // 256 % 256}.{n % 256}")
    clock.now += 61
    throttle.failed("192.0.2.1")
    assert throttle.tracked == 1
