"""Classifiers: the interface, and the CLIP + horde-safety implementation (optional extra)."""

from scanner.classifier.base import CLASSIFIER_LABELS, Classification

__all__ = ["CLASSIFIER_LABELS", "Classification"]
