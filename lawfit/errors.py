"""The one exception class raised for bad input anywhere in :mod:`lawfit`."""


class LawfitError(ValueError):
    """Bad input to a :mod:`lawfit` function.

    Every message says what was expected, what was got, and how to fix it.
    Subclasses :class:`ValueError`, so ``except ValueError`` also catches it.
    """
