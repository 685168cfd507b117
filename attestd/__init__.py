"""attestd: federated image-hash attestation node."""

__version__ = "0.1.0"
