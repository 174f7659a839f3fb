"""Engine pieces: torch.load allow-list for mmengine checkpoints,
hooks and loops."""
from . import safe_globals  # noqa: F401  (registers on import)
from . import layer_decay_optim_constructor  # noqa: F401  (registers on import)
from . import atomic_checkpoint  # noqa: F401  (AtomicCheckpointHook, atomic file backend)
from . import finite_loss_hook  # noqa: F401  (FiniteLossHook)
from . import fsdp_wrap_policy  # noqa: F401  (FSDP auto-wrap policy)
from . import amp_loops  # noqa: F401  (AmpValLoop, AmpTestLoop: bf16 inference)
