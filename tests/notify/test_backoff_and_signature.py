"""The retry schedule (settings in seconds, doubling, jitter, a ceiling) and the signature."""

import hashlib
import hmac

from service.notify.notifications import sign, verify
from service.notify.worker import Policy
from service.settings import Settings


def test_the_schedule_doubles_with_jitter_up_to_the_ceiling() -> None:
    policy = Policy.of(Settings(delivery_backoff_seconds=1.0, delivery_backoff_max_seconds=3600.0))
    lowest = [policy.delay(n, lambda: 0.0) for n in range(1, 15)]
    highest = [policy.delay(n, lambda: 1.0) for n in range(1, 15)]
    assert highest[:6] == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
    assert lowest[:3] == [0.5, 1.0, 2.0]  # jitter: between half and all of the step
    assert max(highest) == 3600.0 and highest[-1] == 3600.0
    assert policy.delay(10_000, lambda: 1.0) == 3600.0  # no overflow after many failures


def test_the_defaults_keep_trying_for_a_day() -> None:
    policy = Policy.of(Settings())
    assert (policy.backoff, policy.backoff_max, policy.give_up) == (1.0, 3600.0, 86400.0)
    # Even with the shortest draws, a day of failures is many attempts, not a handful.
    waited, attempts = 0.0, 0
    while waited < policy.give_up:
        attempts += 1
        waited += policy.delay(attempts, lambda: 0.0)
    assert attempts > 30


def test_the_signature_is_hmac_sha256_of_the_exact_body() -> None:
    body = b'{"resourceType":"Bundle"}'
    expected = hmac.new(b"secret-secret-secret-secret-secret", body, hashlib.sha256).hexdigest()
    assert sign(body, "secret-secret-secret-secret-secret") == f"sha256={expected}"
    assert verify(body, "secret-secret-secret-secret-secret", f"sha256={expected}")
    assert not verify(body + b" ", "secret-secret-secret-secret-secret", f"sha256={expected}")
    assert not verify(body, "another-secret-another-secret-xx", f"sha256={expected}")
