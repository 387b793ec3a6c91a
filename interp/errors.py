"""The one exception type for mistakes in what a user gave us.

Raised where input is read; the CLI alone turns it into one line and exit code 2.
"""


class UserError(Exception):
    """Bad input from the user: the message says what was wrong and what to do."""
