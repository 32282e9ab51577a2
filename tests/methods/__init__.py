"""Tests of ael.methods (a package so basenames cannot clash with other test folders)."""
