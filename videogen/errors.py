"""Errors that mean "the user gave something wrong": the CLI prints them as one line and exits 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from a person (a missing file, an invalid option, a checkpoint of the wrong kind)."""
