"""Train a small sequence model with derive.torch and torch.optim (docs/torch.md).

Task: read a sequence of random length and predict the mean of its values. Sequences of different
lengths go in as one PackedSequence; the layer's final state of each row is its state after the
row's own last step, so the head reads it directly.

    python docs/examples/train_sequence.py --cell lstm_peephole --steps 300
"""

from __future__ import annotations

import argparse

import torch
from torch import nn
from torch.nn.utils.rnn import pack_sequence

from derive.torch import Recurrent


class MeanReader(nn.Module):
    def __init__(self, cell: str, hidden_size: int):
        super().__init__()
        self.recurrent = Recurrent(cell, 1, hidden_size, num_layers=2, bidirectional=True)
        self.head = nn.Linear(2 * hidden_size, 1)

    def forward(self, packed):
        _, (h_n, *_) = self.recurrent(packed)  # h_n: (num_layers * 2, B, H)
        return self.head(torch.cat([h_n[-2], h_n[-1]], dim=1)).squeeze(1)  # last layer, both directions


def batch(size: int, max_length: int, generator: torch.Generator):
    lengths = torch.randint(1, max_length + 1, (size,), generator=generator)
    sequences = [torch.randn(int(n), 1, generator=generator) for n in lengths]
    return pack_sequence(sequences, enforce_sorted=False), torch.stack([s.mean() for s in sequences])


def train(
    cell: str = "lstm",
    steps: int = 300,
    hidden_size: int = 32,
    batch_size: int = 32,
    max_length: int = 20,
    seed: int = 0,
):
    """Returns the losses of every step."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = MeanReader(cell, hidden_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(steps):
        inputs, targets = batch(batch_size, max_length, generator)
        loss = nn.functional.mse_loss(model(inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", default="lstm")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--hidden-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=20)
    args = parser.parse_args(argv)
    losses = train(args.cell, args.steps, args.hidden_size, args.batch_size, args.max_length)
    window = max(1, len(losses) // 10)
    first, last = sum(losses[:window]) / window, sum(losses[-window:]) / window
    print(f"{args.cell}: mean loss of the first {window} steps {first:.4f}, of the last {window} steps {last:.4f}")
    return first, last


if __name__ == "__main__":
    main()
