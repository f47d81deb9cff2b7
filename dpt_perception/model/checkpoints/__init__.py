"""Checkpoint loading and saving.

`load_model(path_or_name)`, the one loader, returns a DPT in eval mode from: our format
(`x.safetensors` + `x.json`), an HF transformers DPT directory, an official reference `.pt` file
(its preset is recognised from the file name, or pass `preset=`), a training checkpoint, or an
official checkpoint name whose file sits in the weights cache directory (`download=True` fetches
it there once). `save_model(model, path)` writes our format.
"""

from .common import CheckpointError, guess_family, load_state_dict_checked, read_state_dict
from .dispatch import load_model
from .native import load_native, save_model

__all__ = [
    "CheckpointError",
    "guess_family",
    "load_model",
    "load_native",
    "load_state_dict_checked",
    "read_state_dict",
    "save_model",
]
