#!/usr/bin/env python3
"""A worker with fault modes, for the worker step's tests (tests/worker_step_test.cc).

Per item, by its input: "ok:X" answers {"echo": X}; "fail" is an item error that retrying cannot
help; "poison" kills the worker (SIGKILL to itself); "hang" blocks the whole batch, ignoring
cancel; "junk-once" writes a non-protocol line on stdout the first time (marker file beside
--record). --die-at-start exits 3 before "ready". --record FILE appends a line per load ("load")
and per batch ({"pid", "size", "jobs"}).
"""

import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import baton_worker  # noqa: E402

record = ""
if "--record" in sys.argv:
    record = sys.argv[sys.argv.index("--record") + 1]


def note(obj):
    if record:
        with open(record, "a") as f:
            f.write(json.dumps(obj) + "\n")


def setup():
    if "--die-at-start" in sys.argv:
        print("cannot load the model: weights missing", file=sys.stderr)
        sys.exit(3)
    note({"load": os.getpid(), "gpus": os.environ.get("CUDA_VISIBLE_DEVICES", "")})


def process(items):
    note({"pid": os.getpid(), "size": len(items), "jobs": [it["job"] for it in items]})
    out = []
    for it in items:
        inp = it["input"]
        if inp == "poison":
            os.kill(os.getpid(), signal.SIGKILL)
        if inp == "hang":
            while True:
                time.sleep(1)
        if inp == "junk-once" and record and not os.path.exists(record + ".junk"):
            open(record + ".junk", "w").close()
            with baton_worker._lock:
                baton_worker._out.write("this is not a protocol line\n")
                baton_worker._out.flush()
            time.sleep(5)
        if inp == "fail":
            out.append(baton_worker.ItemError("bad input: fail", retryable=False))
            continue
        out.append({"echo": inp, "pid": os.getpid(), "batch": len(items)})
    return out


baton_worker.serve(setup, process)
