"""The node's HTTP surface: pict-rs checks, health and metrics."""

from attestd.http.app import create_app

__all__ = ["create_app"]
