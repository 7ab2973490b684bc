"""The one exception class raised for bad collection input (config, model, task)."""


class CollectError(ValueError):
    """Bad input to :mod:`collect`, detected before any training starts where possible.

    Every message says what was expected, what was got, and how to fix it.
    """
