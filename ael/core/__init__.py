"""ael.core."""
