"""Autocast switched off for a region computed in float32 on purpose."""
import contextlib

import torch


def autocast_off(device_type):
    """``torch.autocast(device_type, enabled=False)``; nothing where the device has no autocast
    (torch 2.11 raises for 'meta', on which the FLOP counter runs models)."""
    if torch.amp.is_autocast_available(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()
