"""Tests of ael.engine (a package so basenames cannot clash with other test folders)."""
