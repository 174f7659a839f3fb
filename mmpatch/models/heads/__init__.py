# Components register themselves on import; list each module here.
from .linear_head import LinearHead  # noqa: F401
from .float_roi_extractor import FloatSingleRoIExtractor  # noqa: F401
from .float_rpn_head import FloatRPNHead  # noqa: F401
