"""ael.engine."""
