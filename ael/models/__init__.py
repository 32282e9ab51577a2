"""ael.models."""
