"""Cells under forks, threads and Ctrl-C; every case runs in a fresh interpreter with a timeout.

Sizes are chosen so that the recurrent products run on Numba's threads (at least
`matrix.WORK_PER_THREAD` multiply-adds per thread), which a tiny cell never does, and calls of the main thread
run in the runtime's worker thread (WORKER_WORK = 0), as long calls do.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Defines cells, inputs and `digest(cell, x)`: a hash of forward's outputs and backward's gradients.
SETUP = """
import hashlib, json, os, sys, threading, time
import numpy as np
from generated import GRU, LSTM
from derive.runtime import kernel_call
from derive.runtime import threading_layer

lstm, gru = LSTM(64, 128, seed=0), GRU(64, 128, seed=1)
x = np.random.default_rng(2).standard_normal((50, 16, 64)).astype(np.float32)

def digest(cell, x):
    y, state, tape = cell.forward(x)
    grads = cell.backward(tape, dy=np.ones_like(y))
    arrays = [y, *state, grads.x, *grads.params.values(), *grads.state0]
    return hashlib.sha256(b"".join(a.tobytes() for a in arrays)).hexdigest()

kernel_call.WORKER_WORK = 0  # every call of the main thread runs in the worker thread
serial = {"lstm": digest(lstm, x), "gru": digest(gru, x)}
"""


def run(script: str, prelude: str = "", timeout: float = 600, **env) -> dict:
    """prelude + SETUP + script in a fresh interpreter; the script prints one JSON object last."""
    environment = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    environment.update(PYTHONPATH=str(ROOT), **env)
    code = prelude + SETUP + textwrap.dedent(script)
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"rc {result.returncode}\n{result.stderr[-3000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1]) | {"stderr": result.stderr}


def test_the_default_layer_is_tbb():
    out = run("print(json.dumps({'layer': threading_layer.layer(), 'lock': threading_layer.needs_lock()}))")
    assert out == {"layer": "tbb", "lock": False, "stderr": ""}


FORK_POOL = """
import multiprocessing
with multiprocessing.get_context("fork").Pool(2) as pool:
    forked = pool.starmap_async(digest, [(lstm, x), (gru, x), (lstm, x)]).get(timeout=300)
print(json.dumps({"forked": forked, "serial": [serial["lstm"], serial["gru"], serial["lstm"]]}))
"""


@pytest.mark.parametrize("layer", [{}, {"NUMBA_THREADING_LAYER": "workqueue"}], ids=["default", "workqueue"])
def test_a_fork_pool_after_use_gives_identical_results(layer):
    out = run(FORK_POOL, **layer)
    assert out["forked"] == out["serial"]


def test_a_bare_fork_after_use_gives_identical_results():
    out = run("""
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.write(write, digest(lstm, x).encode())
            os._exit(0)
        os.close(write)
        child = os.read(read, 64).decode()
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"child": child, "status": status, "serial": serial["lstm"]}))
    """)
    assert out["status"] == 0 and out["child"] == out["serial"]


# Threads on the same and on different cells, the main thread calling at the same time.
THREADS = """
from concurrent.futures import ThreadPoolExecutor
work = [("lstm", lstm), ("gru", gru)] * 4
with ThreadPoolExecutor(4) as pool:
    running = [pool.submit(digest, cell, x) for _, cell in work]
    main = digest(lstm, x)
    threaded = [r.result(timeout=300) for r in running]
print(json.dumps({
    "same": threaded == [serial[name] for name, _ in work] and main == serial["lstm"],
    "layer": threading_layer.layer(), "lock": threading_layer.needs_lock(),
}))
"""


def test_threads_calling_the_same_and_different_cells_give_serial_results():
    out = run(THREADS)
    assert out["same"] and out["layer"] == "tbb" and not out["lock"]


def test_a_user_chosen_workqueue_layer_serializes_calls_without_aborting():
    out = run(THREADS, NUMBA_THREADING_LAYER="workqueue")
    assert out["same"] and out["layer"] == "workqueue" and out["lock"]
    assert "RuntimeWarning" not in out["stderr"]  # the user chose it


def test_without_tbb_the_layer_falls_back_to_workqueue_with_one_warning():
    # Numba cannot import its TBB pool: as on a machine without the library.
    out = run(THREADS, prelude="import sys; sys.modules['numba.np.ufunc.tbbpool'] = None\n")
    assert out["same"] and out["layer"] == "workqueue" and out["lock"]
    assert out["stderr"].count("RuntimeWarning") == 1 and "TBB threading layer could not be loaded" in out["stderr"]


# A call of many seconds interrupted after one: how long the KeyboardInterrupt took, and whether the
# cell then gives the results it gave before, bit for bit.
INTERRUPT = """
import signal, _thread
big = LSTM(64, 2048, seed=3)  # about 70 M multiply-adds per step and batch row of 4: seconds for 1000 steps
params = {{name: value.copy() for name, value in big.params.items()}}
short = np.random.default_rng(4).standard_normal((3, 4, 64)).astype(np.float32)
before = digest(big, short)
started = time.perf_counter(); big.forward(np.zeros((20, 4, 64), np.float32))
step = (time.perf_counter() - started) / 20  # seconds per forward step
T = min(2000, max(200, int(8 / step)))
x_long = np.random.default_rng(5).standard_normal((T, 4, 64)).astype(np.float32)
if "{part}" == "backward":
    y, _, tape = big.forward(x_long)
    call = lambda: big.backward(tape, dy=np.ones_like(y))
else:
    call = lambda: big.forward(x_long)
sent = []

def interrupt():
    time.sleep(1.0)
    sent.append(time.perf_counter())
    {send}

threading.Thread(target=interrupt).start()
try:
    call()
    interrupted = False
except KeyboardInterrupt:
    interrupted = True
latency = time.perf_counter() - sent[0]
print(json.dumps({{
    "interrupted": interrupted, "latency": latency, "uninterrupted": T * step, "same": digest(big, short) == before,
    "params": all(np.array_equal(params[name], value) for name, value in big.params.items()),
}}))
"""


@pytest.mark.parametrize(
    "part, send",
    [
        ("forward", "os.kill(os.getpid(), signal.SIGINT)"),
        ("forward", "_thread.interrupt_main()"),
        ("backward", "os.kill(os.getpid(), signal.SIGINT)"),
    ],
)
def test_ctrl_c_stops_a_long_call_and_leaves_the_cell_usable(part, send):
    out = run(INTERRUPT.format(part=part, send=send))
    print(
        f"{part}, {send}: KeyboardInterrupt {out['latency']:.3f} s after the signal; the call takes {out['uninterrupted']:.1f} s"
    )
    assert out["interrupted"] and out["same"] and out["params"]
    # Structural, not a speed bound: without cancelling, the interrupt would wait for the call's end.
    assert out["latency"] < out["uninterrupted"] / 4


BUSY_THREAD = """
kernel_call.WORKER_WORK = 1 << 62  # direct calls: the worker's hand-offs would only add waits
# Per step, W_hh h is 16 rows x 128 x 512 = 2^20 multiply-adds: a parallel product on Numba's threads.
x_busy = np.ones((200, 16, 64), np.float32)
y, _, tape = lstm.forward(x_busy)
dy = np.ones_like(y)
lstm.backward(tape, dy)
sys.setswitchinterval(0.25)
spinning = True

def spin():
    while spinning:
        pass

threading.Thread(target=spin, daemon=True).start()
time.sleep(0.5)
seconds = {}
for name, call in (("forward", lambda: lstm.forward(x_busy)), ("backward", lambda: lstm.backward(tape, dy))):
    runs = []
    for _ in range(3):  # the best of three: the first calls beside a new busy thread wait more, for a while
        started = time.perf_counter()
        call()
        runs.append(time.perf_counter() - started)
    seconds[name] = min(runs)
spinning = False
print(json.dumps({"seconds": seconds, "steps": len(x_busy), "switch": sys.getswitchinterval()}))
"""


def test_a_busy_python_thread_does_not_take_the_gil_at_every_step():
    """The GIL is released once per call. Were it given up and taken back at every step (as Numba
    does around a parallel region in a kernel that holds it), every step would wait for the
    spinning thread's switch interval (here 0.25 s): 200 steps, about 50 s. And the runtime's own
    copies and checks keep it (`held`: NumPy's release it for large arrays, and a forward with its
    tape then waited five times). Released once, a call waits for the GIL about once. Structural:
    it counts hand-offs of the GIL, not a bound on the slowdown itself."""
    out = run(BUSY_THREAD)
    print(
        {
            name: f"{seconds:.3f} s for {out['steps']} steps beside a busy thread"
            for name, seconds in out["seconds"].items()
        }
    )
    assert max(out["seconds"].values()) < 2.5 * out["switch"]
