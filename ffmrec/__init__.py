"""ffmrec: Federated Foundation Models for RECommendation."""

__version__ = "0.1.0"
