"""The one exception type a user ever sees as a message instead of a traceback."""


class UserError(Exception):
    """Bad input or a missing resource: one line saying what, where and how to fix it.

    The CLI prints ``str(err)`` and exits non-zero; nothing else should be caught that way,
    so programming errors still show their traceback. Messages quote values people typed or
    stores held, so line breaks in them are shown as '⏎': the message stays one line.
    """

    def __init__(self, message: str = ""):
        super().__init__(str(message).replace("\r\n", "⏎").replace("\n", "⏎").replace("\r", "⏎"))
