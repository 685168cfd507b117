"""What a classifier says about one image, whichever classifier and wherever it ran."""

from __future__ import annotations

from dataclasses import dataclass, field

CLASSIFIER_LABELS = ("ok", "nsfw", "csam_suspect")
# One limit wherever a model id is made, accepted from a worker or read from a peer's
# attestation: an id one side makes is one every other side takes.
MODEL_ID_MAX = 200


def model_id_problem(model_id: object, what: str = "model_id") -> str | None:
    """What is wrong with ``model_id`` as a model id, or None."""
    if not isinstance(model_id, str) or not model_id:
        return f"{what} must be a non-empty string"
    if len(model_id) > MODEL_ID_MAX:
        return f"{what} is {len(model_id)} characters, over the limit of {MODEL_ID_MAX}"
    if not model_id.isprintable():  # control characters, NUL, lone surrogates
        return f"{what} must be printable text (no control characters or lone surrogates)"
    return None


@dataclass(frozen=True, slots=True)
class Classification:
    """A classifier's verdict on one image: its label, the model that gave it, scores."""

    label: str  # one of CLASSIFIER_LABELS
    model_id: str  # model, weights and scoring version: peers decide whether to trust it
    scores: dict[str, float] = field(default_factory=dict)
    # Random-weight models exist for tests and benchmarks; their verdicts are never published.
    publishable: bool = True

    def __post_init__(self) -> None:
        if self.label not in CLASSIFIER_LABELS:
            raise ValueError(f"classifier label must be one of {CLASSIFIER_LABELS}, got {self.label!r}")
        problem = model_id_problem(self.model_id)
        if problem is not None:
            raise ValueError(problem)
