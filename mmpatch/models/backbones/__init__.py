# Components register themselves on import; list each module here.
from .patch_vit import PatchViT  # noqa: F401
from .patch_mamba import PatchMamba  # noqa: F401
