"""Model ids have one length limit for making, accepting from workers and reading from
peers' attestations (issue 16, item 15): an id one side makes, every other side takes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from attestd.federation.attestations import (
    AttestationError,
    build_attestation,
    parse_attestation,
)
from scanner import FrameHashes
from scanner.classifier import MODEL_ID_MAX, Classification, model_id_problem


def attestation(model: str) -> dict[str, object]:
    return build_attestation(object_id="https://a.example/attestations/1",
                             issuer="https://a.example/actor",
                             audience="https://a.example/followers", sha256="ef" * 32,
                             frames=[FrameHashes(pdq="ab" * 32, pdq_quality=90, phash="cd" * 8)],
                             label="csam_suspect", method="classifier", model=model,
                             published=datetime(2026, 11, 21, tzinfo=UTC))


def test_the_longest_id_made_is_taken_everywhere_and_one_more_nowhere() -> None:
    longest = "m" * MODEL_ID_MAX
    assert Classification("ok", longest).model_id == longest
    assert model_id_problem(longest) is None  # the worker API's check
    assert parse_attestation(attestation(longest)).model == longest
    too_long = longest + "m"
    with pytest.raises(ValueError, match="over the limit"):
        Classification("ok", too_long)
    assert "over the limit" in (model_id_problem(too_long) or "")
    with pytest.raises(AttestationError, match="over the limit"):
        parse_attestation(attestation(too_long))


def test_a_configured_model_name_too_long_for_an_id_fails_at_setup() -> None:
    pytest.importorskip("PIL")
    from scanner.classifier.clip import ClassifierSetupError, ClipSettings, model_id

    with pytest.raises(ClassifierSetupError, match="over the limit"):
        model_id(ClipSettings(model="ViT-" + "L" * MODEL_ID_MAX, pretrained="none"))


@pytest.mark.parametrize("bad", ["", "clip-\ud800", "a\x00b", "line\nbreak"])
def test_unprintable_ids_are_refused(bad: str) -> None:
    assert model_id_problem(bad) is not None
    with pytest.raises(ValueError):
        Classification("csam_suspect", bad)
