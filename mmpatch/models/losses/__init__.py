"""Loss-path kernels of the decode heads: the bilinear resize as matrix products, pixel accuracy
without host syncs, and the fused upsample + cross-entropy (a Triton kernel).

Modules are imported by name (``from mmpatch.models.losses.upsample_cross_entropy import ...``);
nothing is re-exported here, so each submodule stays reachable under its own name."""
