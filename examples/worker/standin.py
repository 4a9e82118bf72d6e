#!/usr/bin/env python3
"""A stand-in for a user's GPU model, as a Baton worker (or, with --command, as one process per item).

It "loads" for --load seconds, then a batch of n items costs --cost A B: A + B*n seconds (the
shape of a real model's batched inference: a fixed launch cost plus a per-item cost). Each item's
output names its job and input, so every job can be checked to get its own answer.

    worker:   python3 standin.py --load 2 --cost 0.3 0.05
    command:  python3 standin.py --load 2 --cost 0.3 0.05 --command --job {job} --input {input}

--record FILE appends one JSON line per batch (pid, size, jobs, CUDA_VISIBLE_DEVICES, start, end)
for tests and bench/worker to check batches, loads and devices.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import baton_worker  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--load", type=float, default=2.0)
    ap.add_argument("--cost", type=float, nargs=2, default=[0.3, 0.05], metavar=("A", "B"))
    ap.add_argument("--record", default="")
    ap.add_argument("--command", action="store_true")
    ap.add_argument("--job", default="")
    ap.add_argument("--input", default="")
    args = ap.parse_args()
    gpus = os.environ.get("CUDA_VISIBLE_DEVICES", "")

    def setup():
        time.sleep(args.load)  # the model's weights being loaded
        return {"loaded_at": time.time()}

    def process(model, items):
        start = time.time()
        time.sleep(args.cost[0] + args.cost[1] * len(items))
        if args.record:
            with open(args.record, "a") as f:
                f.write(json.dumps({"pid": os.getpid(), "size": len(items), "jobs": [it["job"] for it in items],
                                    "gpus": gpus, "start": start, "end": time.time()}) + "\n")
        return [{"answer": "%s saw %s" % (it["job"], it["input"]), "batch": len(items), "gpus": gpus}
                for it in items]

    if args.command:  # the same model, loaded for this one item
        model = setup()
        out = process(model, [{"id": "1", "job": args.job, "input": args.input}])[0]
        out["batch"] = 1
        print(json.dumps(out))
        return
    baton_worker.serve(setup, process)


if __name__ == "__main__":
    main()
