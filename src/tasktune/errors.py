"""The one exception type for mistakes a user can fix.

The CLI turns a `UserError` into one line `error: ...` and exit status 2; everything else is a bug
and keeps its traceback.
"""


class UserError(Exception):
    """A mistake in the user's config, data or command line; the message says what, where and the fix.

    Example: `raise UserError("data/train.csv line 7: label 'maybe' is not in task.labels [neg, pos]; "
    "add it to task.labels or fix the row")`
    """


def did_you_mean(name: str, choices) -> str:
    """Return ' (did you mean 'x'?)' for the closest of `choices`, or '' when none is close."""
    import difflib

    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
