"""What `RecurrentCell.load_torch` copies: one layer and direction of a torch.nn RNN, LSTM or GRU.

Everything is checked before the cell changes (see `cell_weights`):
- a module (`torch.nn.LSTM(...)`) must compute the cell: its mode (RNN_TANH, RNN_RELU, LSTM,
  GRU), `bias` and `proj_size` must be those of the cell's `torch_reference`; a cell without one
  (CIFG, peephole, ...) refuses every torch.nn RNN, LSTM and GRU, which all compute another cell;
- a state_dict (of a module or built by hand) carries only names and shapes, so it is checked for
  those: every key the cell needs, with its shape; no key the cell has no parameter for; no keys
  of other layers or directions unless `layer` or `direction` picks one. It cannot tell a relu
  nn.RNN from a tanh one, or a GRU's three gate blocks from a CIFG LSTM's: pass the module for that;
- every value follows the dtype rule of `derive.runtime.arguments` (a float64 module does not narrow
  silently into a float32 cell).
Never imports torch: a module is recognised through the torch its caller already imported.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from .arguments import as_array

DIRECTIONS = ("forward", "reverse")
LAYER_KEY = re.compile(r"(?P<base>.+)_l(?P<layer>\d+)(?P<reverse>_reverse)?")  # torch.nn's weight_ih_l1_reverse
KIND = ("mode", "bias", "proj_size")  # what a torch.nn.RNNBase computes, besides its sizes and layers


def cell_weights(cell, source, layer: int | None = None, direction: str | None = None) -> dict[str, np.ndarray]:
    """The cell's parameters taken from `source` (a module or a state_dict), as new arrays of the
    cell's dtype and shapes, keyed by parameter name; or an error naming what does not fit."""
    state_dict = _state_dict(cell, source)
    chosen = layer is not None or direction is not None
    layer = 0 if layer is None else layer
    direction = "forward" if direction is None else direction
    if not isinstance(layer, (int, np.integer)) or isinstance(layer, bool) or layer < 0:
        raise ValueError(f"layer must be a non-negative integer, got {layer!r}")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    keys = {p.name: _key(cell, p, int(layer), direction) for p in cell.parameters}
    for name, key in keys.items():
        if key not in state_dict:
            raise ValueError(f"state_dict has no {key!r} (for parameter {name!r}); keys: {sorted(state_dict)}")
    bases = {match.group("base") for key in keys.values() if (match := LAYER_KEY.fullmatch(key))}
    unused = sorted(set(state_dict) - set(keys.values()))
    other_layers = [key for key in unused if (match := LAYER_KEY.fullmatch(key)) and match.group("base") in bases]
    unknown = [key for key in unused if key not in other_layers]
    if unknown:
        raise ValueError(
            f"state_dict has {unknown}, which {_cell_text(cell)} has no parameter for (it takes {list(keys.values())}): "
            "a module with them computes another cell (leave them out of the dict to load the rest anyway)"
        )
    if other_layers and not chosen:
        raise ValueError(
            f"state_dict holds other layers or directions: {other_layers}; pass layer= and direction= "
            f"to pick one (layer=0, direction='forward' takes {list(keys.values())})"
        )
    return {
        p.name: as_array(
            f"state_dict[{keys[p.name]!r}] (parameter {p.name!r})",
            state_dict[keys[p.name]],
            cell.dtype,
            p.shape(cell.input_size, cell.hidden_size, cell.size_values),
            p.shape_text(cell.sizes),
            copy=True,
        )
        for p in cell.parameters
    }


def _state_dict(cell, source) -> Mapping[str, Any]:
    """`source` if it is a state_dict, else the state_dict of a module checked to compute the cell."""
    if isinstance(source, Mapping):
        return source
    if not callable(getattr(source, "state_dict", None)):
        raise TypeError(f"load_torch takes a torch.nn module or its state_dict, got {type(source).__name__}")
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(source, torch.nn.RNNBase):
        _check_kind(cell, source, torch)
    return source.state_dict()


def _check_kind(cell, module, torch) -> None:
    found = {attribute: getattr(module, attribute) for attribute in KIND}
    module_text = f"torch.nn.{type(module).__name__} with {_kind_text(found)}"
    if cell.torch_reference is None:
        raise ValueError(
            f"{_cell_text(cell)} has no torch.nn counterpart, and {module_text} computes another cell; "
            "a state_dict is taken if its weights do come from a module computing this cell"
        )
    name, options = cell.torch_reference[0], cell.torch_options()
    reference = getattr(torch.nn, name)(1, cell.hidden_size, **options)
    expected = {attribute: getattr(reference, attribute) for attribute in KIND}
    if found != expected:
        arguments = ", ".join(f"{key}={value!r}" for key, value in options.items())
        raise ValueError(
            f"{_cell_text(cell)} computes torch.nn.{name}({arguments}) with {_kind_text(expected)}, got {module_text}"
        )


def _key(cell, parameter, layer: int, direction: str) -> str:
    """The state_dict key of `parameter` in `layer` and `direction`."""
    if parameter.torch is None:
        raise ValueError(f"{type(cell).__name__} has no PyTorch counterpart for parameter {parameter.name!r}")
    match = LAYER_KEY.fullmatch(parameter.torch)
    if match and match.group("layer") == "0" and not match.group("reverse"):
        return f"{match.group('base')}_l{layer}" + ("_reverse" if direction == "reverse" else "")
    if (layer, direction) != (0, "forward"):
        raise ValueError(
            f"parameter {parameter.name!r} maps to {parameter.torch!r}, not to a layer-0 key of torch.nn "
            "like 'weight_ih_l0': it has no other layers or directions to pick"
        )
    return parameter.torch


def _cell_text(cell) -> str:
    return f"{type(cell).__name__} ({cell.name})"


def _kind_text(kind: dict) -> str:
    return ", ".join(f"{attribute}={value!r}" for attribute, value in kind.items())
