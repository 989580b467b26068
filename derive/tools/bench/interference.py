"""Calls beside other work: a busy Python thread in the process, and Ctrl-C during a long call.

    python -m derive.tools.bench.interference --repeats 20

- Busy thread: LSTM float32 forward + backward at (T, B, I=H) = BUSY_SIZE, median of `repeats` calls
  each, alone, beside a CPU-busy Python thread of the same process, beside a CPU-busy other process
  (the same contention for the cores, without the GIL), and alone again. The target: a busy thread
  slows a call by at most BUSY_GOAL.
- Ctrl-C: a forward of about LONG_CALL_SECONDS, interrupted by SIGINT after one second: how long
  the KeyboardInterrupt took, and whether the cell then gives its earlier results bit for bit.

`python -m derive bench` runs this in a fresh process (`measure`) and adds its table (`section`) and
targets (`targets`) to the report.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time

BUSY_GOAL = 0.10  # a busy Python thread slows a call by at most 10%
BUSY_SIZE = (64, 32, 128)
INTERRUPT_GOAL = 1.0  # seconds from Ctrl-C to KeyboardInterrupt
LONG_CALL_SECONDS = 4.0
INTERRUPT_AFTER = 1.0


def _median_ms(call, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def busy_thread(repeats: int) -> dict:
    import numpy as np

    import generated

    T, B, H = BUSY_SIZE
    cell = generated.CELLS["lstm"](H, H, dtype=np.float32, seed=0)
    rng = np.random.default_rng(0)
    x, dy = (rng.standard_normal((T, B, H)).astype(np.float32) for _ in range(2))

    def call():
        _, _, tape = cell.forward(x)
        cell.backward(tape, dy)

    for _ in range(3):
        call()
    out = {"alone": _median_ms(call, repeats)}
    spinning = [True]

    def spin():
        while spinning[0]:
            pass

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    time.sleep(0.1)
    out["busy_thread"] = _median_ms(call, repeats)
    spinning[0] = False
    thread.join()
    process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        out["busy_process"] = _median_ms(call, repeats)
    finally:
        process.kill()
        process.wait()
    out["alone_again"] = _median_ms(call, repeats)
    out["switch_interval_ms"] = sys.getswitchinterval() * 1e3
    return out


def interrupt() -> dict:
    import numpy as np

    import generated

    cell = generated.CELLS["lstm"](64, 2048, seed=3)
    short = np.random.default_rng(4).standard_normal((3, 4, 64)).astype(np.float32)

    def digest():
        y, state, _ = cell.forward(short)
        return hashlib.sha256(b"".join(a.tobytes() for a in (y, *state))).hexdigest()

    before = digest()
    started = time.perf_counter()
    cell.forward(np.zeros((20, 4, 64), np.float32), tape=False)
    step = (time.perf_counter() - started) / 20
    steps = max(100, int(LONG_CALL_SECONDS / step))
    x = np.random.default_rng(5).standard_normal((steps, 4, 64)).astype(np.float32)
    sent = []

    def send():
        time.sleep(INTERRUPT_AFTER)
        sent.append(time.perf_counter())
        os.kill(os.getpid(), signal.SIGINT)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        cell.forward(x, tape=False)
        interrupted = False
    except KeyboardInterrupt:
        interrupted = True
    latency = time.perf_counter() - sent[0] if sent else None
    sender.join()
    return {
        "interrupted": interrupted,
        "latency": latency,
        "call_seconds": steps * step,
        "usable": digest() == before,
    }


def results(repeats: int) -> dict:
    from derive.runtime import threading_layer

    threading_layer.layer()
    return {"busy": busy_thread(repeats), "interrupt": interrupt(), "repeats": repeats}


def measure(repeats: int, env: dict) -> dict:
    """`results` in a fresh process (python -m derive.tools.bench.interference --json)."""
    command = [sys.executable, "-m", "derive.tools.bench.interference", "--json", "--repeats", str(repeats)]
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed (exit code {done.returncode})")
    return json.loads(done.stdout.splitlines()[-1])


def slowdowns(r: dict) -> tuple[float, float]:
    """(beside a busy thread, beside a busy process) as fractions over the calls alone."""
    busy = r["busy"]
    alone = min(busy["alone"], busy["alone_again"])
    return busy["busy_thread"] / alone - 1, busy["busy_process"] / alone - 1


def targets(r: dict) -> list[tuple[str, str, bool]]:
    """(target, measured, met) rows for the report's targets table."""
    thread, process = slowdowns(r)
    ctrl_c = r["interrupt"]
    latency = "no KeyboardInterrupt" if not ctrl_c["interrupted"] else f"{ctrl_c['latency']:.2f} s"
    return [
        (
            f"a busy Python thread slows a call by at most {BUSY_GOAL:.0%}",
            f"{thread:+.0%} (a busy other process, the same contention for the cores without the GIL: {process:+.0%})",
            thread <= BUSY_GOAL,
        ),
        (
            f"Ctrl-C interrupts a long call within {INTERRUPT_GOAL:.0f} s and leaves the cell usable",
            f"{latency}; cell {'unchanged' if ctrl_c['usable'] else 'CHANGED'}",
            ctrl_c["interrupted"] and ctrl_c["latency"] <= INTERRUPT_GOAL and ctrl_c["usable"],
        ),
    ]


def section(r: dict) -> tuple:
    """The report's table: (title, intro lines, header, rows, align)."""
    busy, ctrl_c = r["busy"], r["interrupt"]
    T, B, H = BUSY_SIZE
    thread, process = slowdowns(r)
    rows = [
        ["alone", f"{busy['alone']:.2f}", ""],
        ["beside a busy Python thread", f"{busy['busy_thread']:.2f}", f"{thread:+.0%}"],
        ["beside a busy other process", f"{busy['busy_process']:.2f}", f"{process:+.0%}"],
        ["alone again", f"{busy['alone_again']:.2f}", ""],
    ]
    return (
        "Beside other work: a busy Python thread, Ctrl-C",
        [
            f"LSTM float32 forward + backward at T×B×H = {T}×{B}×{H}, median of {r['repeats']} calls each (ms); "
            f"the switch interval is {busy['switch_interval_ms']:.0f} ms. Ctrl-C: a forward of "
            f"{ctrl_c['call_seconds']:.1f} s interrupted by SIGINT after {INTERRUPT_AFTER:.0f} s: KeyboardInterrupt "
            + (f"{ctrl_c['latency']:.3f} s later" if ctrl_c["interrupted"] else "never raised")
            + f"; the cell then gives {'the same' if ctrl_c['usable'] else 'different'} results as before."
        ],
        ["LSTM fwd+bwd", "ms", "slowdown"],
        rows,
        "lrr",
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="print the results as one JSON line")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be positive, got {args.repeats}")
    out = results(args.repeats)
    print(json.dumps(out) if args.json else out)


if __name__ == "__main__":
    main()
