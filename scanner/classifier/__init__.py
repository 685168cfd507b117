"""Classifiers: the interface, and the CLIP + horde-safety implementation (optional extra)."""

from scanner.classifier.base import (
    CLASSIFIER_LABELS,
    MODEL_ID_MAX,
    Classification,
    model_id_problem,
)

__all__ = ["CLASSIFIER_LABELS", "MODEL_ID_MAX", "Classification", "model_id_problem"]
