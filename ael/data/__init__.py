"""ael.data."""
