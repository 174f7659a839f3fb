# Components register themselves on import; list each module here.
from .patch_pyramid_neck import PatchPyramidNeck  # noqa: F401
