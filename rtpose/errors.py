"""User-facing errors.

Anything a user can cause (a bad path, a bad config key, a frame range out of bounds)
raises ``RtposeError`` with one line that names the culprit; the CLI prints it as
``error: ...`` and exits with status 2, never with a traceback.
"""


class RtposeError(Exception):
    """An error the user can fix; its message is one line and names the file or field."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, after the command has said what it kept or lost (the CLI adds no second line)."""
