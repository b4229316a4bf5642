"""Compere: pairwise ranking service."""

__version__ = "0.2.0"
