"""The interface every classifier implements (the CLIP one, a remote worker's client)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from scanner.hashes import ImageHashes

CLASSIFIER_LABELS = ("ok", "nsfw", "csam_suspect")


@dataclass(frozen=True, slots=True)
class Classification:
    label: str  # one of CLASSIFIER_LABELS
    model_id: str  # model, weights and scoring version: peers decide whether to trust it
    scores: dict[str, float] = field(default_factory=dict)
    # Random-weight models exist for tests and benchmarks; their verdicts are never published.
    publishable: bool = True

    def __post_init__(self) -> None:
        if self.label not in CLASSIFIER_LABELS:
            raise ValueError(f"classifier label must be one of {CLASSIFIER_LABELS}, got {self.label!r}")


class Classifier(Protocol):
    """Classifies one image; implementations batch internally."""

    async def classify(self, data: bytes, hashes: ImageHashes) -> Classification: ...
