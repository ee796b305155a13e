"""Small argument checks shared by the codecs."""
from __future__ import annotations

import operator


def as_int(value, what: str) -> int:
    """``value`` as a Python int (anything with ``__index__``, never a bool), else ``TypeError`` naming ``what``."""
    if isinstance(value, bool):
        raise TypeError(f"{what} = {value!r}: must be an int, not bool")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{what} = {value!r}: must be an int, got {type(value).__name__}") from None
