"""What a classifier says about one image, whichever classifier and wherever it ran."""

from __future__ import annotations

from dataclasses import dataclass, field

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
