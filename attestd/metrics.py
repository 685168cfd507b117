"""Prometheus metrics, on a registry of the app's own (several apps can share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

# The *_created series double the output and no dashboard uses them.
disable_created_metrics()  # type: ignore[no-untyped-call]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.checks = Counter(
            "attestd_checks", "Image checks by decision, label and what decided",
            ["decision", "label", "decided_by"], registry=self.registry)
        self.unhashable = Counter(
            "attestd_unhashable", "Checks of images that could not be hashed "
            "(policy.on_unhashable), by why: deadline, busy, timeout, crashed, budget",
            ["why"], registry=self.registry)
        self.check_seconds = Histogram(
            "attestd_check_seconds", "Time to answer one check",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry)
        self.queue_depth = Gauge(
            "attestd_queue_depth", "Images waiting for a classifier", registry=self.registry)
        self.index_entries = Gauge(
            "attestd_index_entries", "Perceptual hashes in the bad-hash index",
            registry=self.registry)
        self.admin_login_failures = Counter(
            "attestd_admin_login_failures", "Admin logins with a wrong name or password",
            registry=self.registry)
        self.admin_logins_delayed = Counter(
            "attestd_admin_logins_delayed",
            "Admin login attempts held back after repeated failures (someone guessing?)",
            registry=self.registry)
        self.connections_refused = Counter(
            "attestd_connections_refused", "Connections answered 503 because "
            "server.max_connections were open", registry=self.registry)
        self.review_not_kept = Counter(
            "attestd_review_not_kept", "Unreadable uploads not queued for review (or queued "
            "without their copy) by the review.* cap they met", ["why"], registry=self.registry)
        self.write_skipped = Counter(
            "attestd_write_skipped", "Records the database refused and the write-behind "
            "skipped (audit, image, received); the log names each", ["kind"],
            registry=self.registry)
