"""The threads that share matrix products (derive/runtime/thread_pool.py), in fresh interpreters with a timeout:
they take part, two callers at once still get exact products, a forked child gets a pool of its own, idle
threads cost little CPU, and the process exits."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import json, os, threading, time
import numba, numpy as np
from derive.runtime import matrix, thread_pool, threading_layer

threading_layer.layer()  # starts Numba's threads, then the pool's

@numba.njit(nogil=True)
def products(a, panels, c, times):
    for _ in range(times):
        matrix.matmul(a, panels, c, 0.0)

# small integers: every order of the sums gives the exact product
rng = np.random.default_rng(0)
a = rng.integers(-3, 4, (256, 256)).astype(np.float64)
b = rng.integers(-3, 4, (256, 512)).astype(np.float64)
expected, panels = a @ b, matrix.pack(b)

def pool_takes_part(calls=2000):
    before = thread_pool.tasks_run_by_pool_threads()
    c = np.empty_like(expected)
    for _ in range(calls):
        products(a, panels, c, 1)
        if thread_pool.tasks_run_by_pool_threads() > before:
            return bool((c == expected).all())
    return False

report = {"threads": thread_pool.threads(), "takes_part": pool_takes_part()}

# two callers at once: one has the pool, the other runs its own tasks
outputs = [np.empty_like(expected) for _ in range(2)]
callers = [threading.Thread(target=products, args=(a, panels, out, 300)) for out in outputs]
for caller in callers:
    caller.start()
for caller in callers:
    caller.join()
report["two_callers_exact"] = all(bool((out == expected).all()) for out in outputs)

pid = os.fork()
if pid == 0:  # the child: no threads but its own
    ok = thread_pool.threads() == 1 and thread_pool.tasks_run_by_pool_threads() == 0 and pool_takes_part()
    os._exit(0 if ok else 3)
report["child_exit"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

time.sleep(0.1)  # past the spinning: the pool's thread sleeps
start = time.process_time()
time.sleep(1.0)
report["idle_cpu_seconds"] = time.process_time() - start
print(json.dumps(report))
"""


def test_pool_threads_share_products_exactly_survive_fork_and_idle_cheaply(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    env.update(PYTHONPATH=str(ROOT), NUMBA_NUM_THREADS="2")
    script = tmp_path / "pool.py"  # a file: numba caches no code given by -c
    script.write_text(textwrap.dedent(SCRIPT))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]  # and it exited: the pool's thread stopped at exit
    report = json.loads(out.stdout.strip().splitlines()[-1])
    idle = report.pop("idle_cpu_seconds")
    assert report == {"threads": 1, "takes_part": True, "two_callers_exact": True, "child_exit": 0}
    # a thread that kept spinning would use a whole core; sleeping, it wakes at most 500 times a second
    assert idle < 0.2, idle
