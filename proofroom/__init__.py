"""Proofroom: a real-time review room for generated images."""

__version__ = "0.1.0"
