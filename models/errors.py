"""The refusals every command raises, by kind, so callers match on type, never on text.

Kept free of imports so the fast read paths can raise them too. Each message says what was
wrong and how to fix it; the CLI prints it as one line and exits 2."""


class CommandError(ValueError):
    """A refused command: nothing was written."""


class Invalid(CommandError):
    """The input is malformed or breaks a pathway rule (a bad date, an unknown outcome)."""


class NotFound(CommandError):
    """The case, task, practitioner, intake or message does not exist."""


class Refused(CommandError):
    """The actor may not do this (the access policy said no; the refusal is audited)."""


class WrongCode(Refused):
    """The one-time code was empty, wrong or used already: nothing was recorded."""


class AlreadyDone(CommandError):
    """The work was done already (a task completed twice, a case erased twice)."""


class ConfigError(CommandError):
    """An environment variable or a configuration file the service cannot use: the message
    names the variable or file and what it must hold (never a secret it may contain)."""
