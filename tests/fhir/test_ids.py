"""Server-assigned ids: valid FHIR ids, RFC 9562 version 7 UUIDs, ordered by creation time."""

import itertools
import re
import time
import uuid

from service.fhir.ids import new_resource_id

FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def test_an_id_is_a_version_7_uuid_and_a_valid_fhir_id() -> None:
    text = new_resource_id()
    parsed = uuid.UUID(text)
    assert FHIR_ID.fullmatch(text)
    assert str(parsed) == text  # canonical lower-case form
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122


def test_the_id_starts_with_its_creation_time_in_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    millis = uuid.UUID(new_resource_id()).int >> 80
    after = time.time_ns() // 1_000_000
    assert before <= millis <= after


def test_ids_of_later_milliseconds_sort_after_earlier_ones_and_never_repeat() -> None:
    batches = []
    for _ in range(3):
        batches.append([new_resource_id() for _ in range(500)])
        time.sleep(0.002)
    everything = [i for batch in batches for i in batch]
    assert len(set(everything)) == len(everything)
    for earlier, later in itertools.pairwise(batches):
        assert max(earlier) < min(later)
