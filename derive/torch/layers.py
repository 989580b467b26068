"""torch.nn modules running the generated cells: `Recurrent` for any cell, `LSTM`/`GRU`/`RNN` as drop-ins.

Shapes, options, parameter names and the order of everything follow torch.nn.LSTM/GRU/RNN:
input (T, B, I) or (B, T, I) with batch_first, or (T, I) unbatched, or a PackedSequence;
initial and final states (num_layers * num_directions, B, H), directions interleaved per layer;
a bidirectional layer's output is [forward, reverse] along the features; dropout acts on the
output of every layer but the last, in training mode only.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

import generated
from derive.runtime import Parameter, RecurrentCell

from . import ops
from .directions import columns
from .directions import run as run_directions


def _cell_class(cell) -> type[RecurrentCell]:
    if isinstance(cell, str):
        if cell not in generated.CELLS:
            raise ValueError(
                f"cell must be a name in generated.CELLS {sorted(generated.CELLS)} or a generated class, got {cell!r}"
            )
        return generated.CELLS[cell]
    if isinstance(cell, type) and issubclass(cell, RecurrentCell):
        return cell
    raise TypeError(f"cell must be a name in generated.CELLS or a generated cell class, got {cell!r}")


def _is_bias(p: Parameter) -> bool:
    """A bias: PyTorch's bias_* or, without a PyTorch name, a vector named b or b_*."""
    if p.torch:
        return p.torch.startswith("bias")
    return p.columns is None and (p.name == "b" or p.name.startswith("b_"))


def parameter_name(p: Parameter, layer: int, reverse: bool) -> str:
    """PyTorch's name (weight_ih_l1_reverse) where the parameter has one, else the spec's (w_ci_l1_reverse)."""
    base = p.torch.removesuffix("_l0") if p.torch else p.name
    return f"{base}_l{layer}{'_reverse' if reverse else ''}"


class Recurrent(nn.Module):
    """A stack of generated cells with torch.nn.LSTM's options; `cell` is a name in generated.CELLS
    or a generated class.

    forward(input, hx=None, *, all_states=False) returns (output, final) with final a tuple of
    (num_layers * num_directions, B, H) tensors, one per state of the cell (h first); hx likewise
    (a bare tensor for single-state cells). all_states=True also returns every step's full state
    of the last layer: a tuple, one tensor shaped like `output` (or a PackedSequence) per state.
    bias=False leaves out the biases (see `_is_bias`), which are then zero. Keyword arguments named
    after the cell's constants set them (`Recurrent("cornn", I, H, dt=0.1)`); every layer and direction
    uses the values in `self.constants`. A cell's declared sizes are keyword arguments too
    (`Recurrent("lstm_proj", I, H, proj_size=2)`, default hidden_size // 2): a state of such a size
    has that many columns instead of H (lstm_proj's h and the output: proj_size).
    """

    def __init__(
        self,
        cell,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device=None,
        dtype=None,
        **constants,
    ):
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout <= 1:
            raise ValueError(f"dropout must be a number in [0, 1], got {dropout!r}")
        dtype = torch.get_default_dtype() if dtype is None else dtype
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        if device is not None and torch.device(device).type != "cpu":
            raise ValueError(f"device must be the CPU: the generated kernels run on the CPU only, got {device}")
        self.cell_class = _cell_class(cell)
        self.size_values = self.cell_class.sizes_from(constants, hidden_size)
        self.cell = ops.register(self.cell_class)
        self.constants = self.cell_class.constants_with(constants, str(dtype).removeprefix("torch."))
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout, self.bidirectional = bias, batch_first, float(dropout), bidirectional
        self._weights: list[list[str | None]] = []  # per (layer, direction): attribute names, None for a left-out bias
        directions = 2 if bidirectional else 1
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else self.state_widths[0] * directions
            for direction in range(directions):
                names = []
                for p in self.cell_class.parameters:
                    if not bias and _is_bias(p):
                        names.append(None)
                        continue
                    names.append(parameter_name(p, layer, direction == 1))
                    self.register_parameter(
                        names[-1],
                        nn.Parameter(torch.empty(p.shape(layer_input, hidden_size, self.size_values), dtype=dtype)),
                    )
                self._weights.append(names)
        self.reset_parameters()

    @property
    def state_widths(self) -> tuple[int, ...]:
        """Each state's size: hidden_size, or a declared size (lstm_proj's h: proj_size)."""
        known = {"H": self.hidden_size, **self.size_values}
        return tuple(known[size] for size in self.cell_class.state_sizes) or (self.hidden_size,) * len(
            self.cell_class.state_names
        )

    def reset_parameters(self) -> None:
        """PyTorch's init, uniform in (-1/sqrt(H), 1/sqrt(H)), or the spec's own."""
        with torch.no_grad():
            for names in self._weights:
                for p, name in zip(self.cell_class.parameters, names):
                    if name is None:
                        continue
                    low, high = p.init_range(self.hidden_size)
                    weight = getattr(self, name)
                    if low == high:
                        weight.fill_(low)
                    else:
                        weight.uniform_(low, high)

    def extra_repr(self) -> str:
        text = f"{self.cell!r}, {self.input_size}, {self.hidden_size}"
        for name, default in (
            ("num_layers", 1),
            ("bias", True),
            ("batch_first", False),
            ("dropout", 0.0),
            ("bidirectional", False),
        ):
            if getattr(self, name) != default:
                text += f", {name}={getattr(self, name)}"
        for name, value in self.constants.items():
            if value != self.cell_class.constants[name]:
                text += f", {name}={value!r}"
        for size, value in self.size_values.items():
            text += f", {self.cell_class.sizes[size]}={value}"
        return text

    def _params(self, index: int, layer_input: Tensor) -> list[Tensor]:
        out = []
        for p, name in zip(self.cell_class.parameters, self._weights[index]):
            if name is None:
                out.append(layer_input.new_zeros(p.shape(0, self.hidden_size, self.size_values)))
            else:
                out.append(getattr(self, name))
        return out

    @property
    def _dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def forward(self, input, hx=None, *, all_states: bool = False):
        data, batch_sizes, (T, B), sorted_indices, unsorted_indices, unbatched = self._rows(input)
        state0 = self._initial_states(hx, B, data, sorted_indices, unbatched)
        directions = 2 if self.bidirectional else 1
        layer_input, finals = data, []
        constants = torch.tensor(list(self.constants.values()), dtype=torch.float64)
        # no gradient wanted: the inference kernels, which keep no tape for backward
        inference = ops.no_gradient_wanted(data, state0, *self.parameters())
        for layer in range(self.num_layers):
            arguments = [
                (
                    self.cell,
                    layer_input,
                    batch_sizes,
                    state0[:, index],
                    self._params(index, layer_input),
                    constants,
                    index % 2 == 1 and self.bidirectional,
                )
                for index in range(layer * directions, (layer + 1) * directions)
            ]
            # (N, D*width): [forward, reverse] along the features; a narrower h: the first columns of the rows
            layer_input, outputs = run_directions(arguments, inference, self.state_widths[0])
            finals += [final for _, final in outputs]
            if self.dropout and self.training and layer < self.num_layers - 1:  # so the last layer's is the output
                layer_input = nn.functional.dropout(layer_input, self.dropout, training=True)
        final = torch.stack(finals, dim=1)  # (n, L*D, B, H)
        if unsorted_indices is not None:
            final = final.index_select(2, unsorted_indices)
        finals = tuple(
            s[..., :width].squeeze(1) if unbatched else s[..., :width]
            for s, width in zip(final.unbind(0), self.state_widths)
        )
        shape = (T, B, layer_input.shape[-1])
        output = self._layout(layer_input, input, batch_sizes, shape, unbatched)
        if not all_states:
            return output, finals
        every = [states[:, B:] for states, _ in outputs]  # the last layer's, after every step (rows B: follow state0)
        all_rows = [  # per state (N, D*width); one direction: views of the op's output, which autograd guards
            columns(every[0][k], width)
            if directions == 1
            else torch.cat([columns(rows[k], width) for rows in every], dim=-1)
            for k, width in enumerate(self.state_widths)
        ]
        return (
            output,
            finals,
            tuple(self._layout(s, input, batch_sizes, (T, B, s.shape[-1]), unbatched) for s in all_rows),
        )

    # -- layouts ----------------------------------------------------------------------------
    def _rows(self, input):
        """(rows (N, I), batch_sizes, (T, B), sorted_indices, unsorted_indices, unbatched) for any input form."""
        if isinstance(input, PackedSequence):
            self._check_tensor("input.data", input.data)
            sizes = (len(input.batch_sizes), int(input.batch_sizes[0]))
            return input.data, input.batch_sizes, sizes, input.sorted_indices, input.unsorted_indices, False
        if not isinstance(input, Tensor):
            raise TypeError(f"input must be a torch.Tensor or a PackedSequence, got {type(input).__name__}")
        if input.dim() not in (2, 3):
            raise ValueError(
                f"input must have shape (T, B, input_size), (B, T, input_size) with batch_first, or (T, input_size), got {tuple(input.shape)}"
            )
        self._check_tensor("input", input)
        unbatched = input.dim() == 2
        x = input.unsqueeze(1) if unbatched else input.transpose(0, 1) if self.batch_first else input
        T, B = x.shape[:2]
        return x.reshape(T * B, self.input_size), torch.full((T,), B, dtype=torch.int64), (T, B), None, None, unbatched

    def _check_tensor(self, name: str, value: Tensor) -> None:
        if value.device.type != "cpu":
            raise ValueError(f"{name} is on {value.device}: derive.torch runs on the CPU only; move it with .cpu()")
        if value.dtype != self._dtype:
            raise TypeError(f"{name} must have dtype {self._dtype} (the layer's), got {value.dtype}")
        if value.shape[-1] != self.input_size:
            raise ValueError(
                f"{name} must have input_size = {self.input_size} features in its last dimension, got shape {tuple(value.shape)}"
            )

    def _layout(self, rows: Tensor, input, batch_sizes, shape, unbatched: bool):
        """Rows (N, F) back in the input's form."""
        if isinstance(input, PackedSequence):
            return PackedSequence(rows, batch_sizes, input.sorted_indices, input.unsorted_indices)
        out = rows.reshape(shape)
        if unbatched:
            return out.squeeze(1)
        return out.transpose(0, 1) if self.batch_first else out

    def _initial_states(self, hx, B: int, data: Tensor, sorted_indices, unbatched: bool) -> Tensor:
        """(n, L*D, B, H), zeros where hx is None, in the rows' (sorted) order."""
        cls, H = self.cell_class, self.hidden_size
        n, LD = len(cls.state_names), self.num_layers * (2 if self.bidirectional else 1)
        widths = self.state_widths
        if hx is None:
            return data.new_zeros(n, LD, B, H)
        if isinstance(hx, Tensor) and n == 1:
            hx = (hx,)
        if not isinstance(hx, (tuple, list)) or len(hx) != n:
            raise ValueError(
                f"hx must be a tuple of {n} tensors {cls.state_names}, each (num_layers * num_directions, B, hidden_size), got {type(hx).__name__}"
            )
        for name, value, width in zip(cls.state_names, hx, widths):
            expected = (LD, width) if unbatched else (LD, B, width)
            if not isinstance(value, Tensor):
                raise TypeError(f"hx[{name}] must be a torch.Tensor, got {type(value).__name__}")
            if value.device.type != "cpu":
                raise ValueError(
                    f"hx[{name}] is on {value.device}: derive.torch runs on the CPU only; move it with .cpu()"
                )
            if value.dtype != self._dtype:
                raise TypeError(f"hx[{name}] must have dtype {self._dtype} (the layer's), got {value.dtype}")
            if tuple(value.shape) != expected:
                size = "hidden_size" if width == H else "proj_size"
                raise ValueError(
                    f"hx[{name}] must have shape (num_layers * num_directions, B, {size}) = {expected}, got {tuple(value.shape)}"
                )
        padded = [nn.functional.pad(s, (0, H - s.shape[-1])) for s in hx]  # a narrower state: its first columns
        state0 = torch.stack([s.unsqueeze(1) if unbatched else s for s in padded])
        return state0 if sorted_indices is None else state0.index_select(2, sorted_indices)


def _torch_signature(mode: str):
    """A drop-in for torch.nn.<mode>: its signature, hx and return conventions."""

    class DropIn(Recurrent):
        def forward(self, input, hx=None, *, all_states: bool = False):
            result = super().forward(input, hx, all_states=all_states)
            output, finals = result[0], result[1]
            finals = finals if len(finals) > 1 else finals[0]
            return (output, finals, *result[2:])

    DropIn.__name__ = DropIn.__qualname__ = mode
    return DropIn


class LSTM(_torch_signature("LSTM")):
    """torch.nn.LSTM on the generated `lstm` cell: y, (h_n, c_n) = layer(x, (h_0, c_0))."""

    def __init__(
        self,
        input_size,
        hidden_size,
        num_layers=1,
        bias=True,
        batch_first=False,
        dropout=0.0,
        bidirectional=False,
        proj_size=0,
        device=None,
        dtype=None,
    ):
        if not isinstance(proj_size, int) or isinstance(proj_size, bool) or not 0 <= proj_size < hidden_size:
            raise ValueError(
                f"proj_size must be an integer from 0 to hidden_size - 1 = {hidden_size - 1}, got {proj_size!r}"
            )
        cell, sizes = ("lstm_proj", {"proj_size": proj_size}) if proj_size else ("lstm", {})
        super().__init__(
            cell, input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, device, dtype, **sizes
        )
        self.proj_size = proj_size


class GRU(_torch_signature("GRU")):
    """torch.nn.GRU on the generated `gru` cell: y, h_n = layer(x, h_0)."""

    def __init__(
        self,
        input_size,
        hidden_size,
        num_layers=1,
        bias=True,
        batch_first=False,
        dropout=0.0,
        bidirectional=False,
        device=None,
        dtype=None,
    ):
        super().__init__(
            "gru", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, device, dtype
        )


class RNN(_torch_signature("RNN")):
    """torch.nn.RNN on the generated `rnn` (tanh) or `rnn_relu` cell: y, h_n = layer(x, h_0)."""

    def __init__(
        self,
        input_size,
        hidden_size,
        num_layers=1,
        nonlinearity="tanh",
        bias=True,
        batch_first=False,
        dropout=0.0,
        bidirectional=False,
        device=None,
        dtype=None,
    ):
        cells = {"tanh": "rnn", "relu": "rnn_relu"}
        if nonlinearity not in cells:
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(
            cells[nonlinearity],
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            device,
            dtype,
        )
        self.nonlinearity = nonlinearity
