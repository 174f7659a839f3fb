# Components register themselves on import; list each module here.
from .linear_head import LinearHead  # noqa: F401
