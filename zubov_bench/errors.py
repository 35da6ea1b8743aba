"""Errors that the CLI reports as one clean line (no traceback)."""


class UserError(Exception):
    """Bad input or a missing resource: the message is shown to the user as is."""
