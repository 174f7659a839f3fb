"""Engine pieces: torch.load allow-list for mmengine checkpoints, the train/test CLI logic."""
from . import safe_globals  # noqa: F401  (registers on import)
from . import layer_decay_optim_constructor  # noqa: F401  (registers on import)
