# Components register themselves on import; list each module here.
from .patch_vit import PatchViT  # noqa: F401
