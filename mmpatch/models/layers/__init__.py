from .layer_norm_2d import LayerNorm2d  # noqa: F401
