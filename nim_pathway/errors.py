"""The refusal every command raises; kept free of imports so fast paths can raise it too."""


class CommandError(ValueError):
    """A refused command: the message says what was wrong and how to fix it."""
