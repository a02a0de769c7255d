"""The one exception type the command line turns into a one-line message."""


class HashidxError(Exception):
    """A user-facing failure: the message names the file and says what to do."""
