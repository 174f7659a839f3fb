from .layer_norm_2d import LayerNorm2d  # noqa: F401
from .drop_path import DropPath  # noqa: F401
