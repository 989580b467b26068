"""DistributedDataParallel around a Recurrent layer: 2 processes on this machine, gloo backend.

Each process trains on its half of the batch; DDP averages the gradients, so after every step the
parameters equal those of one process training on the whole batch. The script checks exactly that
and prints the largest relative difference.

    python docs/examples/ddp_recurrent.py --steps 3
"""

from __future__ import annotations

import argparse
import os
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from derive.torch import Recurrent

WORLD_SIZE = 2


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.recurrent = Recurrent("lstm_peephole", 3, 8, num_layers=2, dtype=torch.float64)
        self.head = nn.Linear(8, 1, dtype=torch.float64)

    def forward(self, x):
        y, _ = self.recurrent(x)
        return self.head(y[-1]).squeeze(1)


def data(steps: int):
    generator = torch.Generator().manual_seed(1)
    return [
        (
            torch.randn(6, 8, 3, generator=generator, dtype=torch.float64),
            torch.randn(8, generator=generator, dtype=torch.float64),
        )
        for _ in range(steps)
    ]


def train(model, batches, rows=slice(None)):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for x, target in batches:
        loss = nn.functional.mse_loss(model(x[:, rows]), target[rows])  # the mean over this process's rows
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def worker(rank: int, steps: int, rendezvous: str, out: str):
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=WORLD_SIZE)
    try:
        torch.manual_seed(0)
        model = DistributedDataParallel(Model())
        per_rank = 8 // WORLD_SIZE
        train(model, data(steps), slice(rank * per_rank, (rank + 1) * per_rank))
        if rank == 0:
            torch.save(model.module.state_dict(), out)
    finally:
        dist.destroy_process_group()


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "ddp.pt")
        mp.spawn(worker, args=(args.steps, os.path.join(folder, "rendezvous"), out), nprocs=WORLD_SIZE, join=True)
        distributed = torch.load(out)
    torch.manual_seed(0)
    single = Model()
    start = {k: v.clone() for k, v in single.state_dict().items()}
    train(single, data(args.steps))
    difference = max(((distributed[k] - v).abs().max() / v.abs().max()).item() for k, v in single.state_dict().items())
    moved = min((single.state_dict()[k] - v).abs().max().item() for k, v in start.items())
    print(
        f"{WORLD_SIZE} processes against 1 after {args.steps} steps: largest relative parameter difference {difference:.2e} "
        f"(every parameter moved by at least {moved:.2e})"
    )
    return difference


if __name__ == "__main__":
    main()
