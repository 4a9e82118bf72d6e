"""Baton worker helper: a user's model as a resident `uses: worker` step, standard library only.

A worker loads its model once, then answers batches of items from many jobs (protocol v1,
JSON Lines on stdin/stdout; docs/steps/worker.md). This module speaks the protocol, so a model
plugs in with a setup and a process function:

    import baton_worker

    def setup():
        return load_my_model()                  # once per worker process (its GPU is in
                                                # CUDA_VISIBLE_DEVICES)
    def process(model, items):
        outs = model.run([it["input"] for it in items])
        return [{"caption": o} for o in outs]   # one result per item, in order

    baton_worker.serve(setup, process)

`process(items)` (one argument) or `process(model, items)` (two: setup's return value first).
Each item is a dict: id, job, input, attempt, workdir, outdir, results (earlier steps' results).
Each result is a dict (the item's output: the step's results downstream), or an exception
(baton_worker.ItemError(message, retryable=False) for an input that can never work); a result
list may also be a dict {item id: result}. An exception out of process fails every item of that
batch (retryable). Anything the model prints goes to stderr, which Baton logs as the worker's.
baton_worker.log(message, id=None, level="info"), baton_worker.progress(id, fraction) and
baton_worker.cancelled(id) (True once Baton cancelled that item) may be called from process.
"""

import inspect
import json
import os
import queue
import sys
import threading
import traceback

__all__ = ["serve", "ItemError", "log", "progress", "cancelled"]

_out = None
_lock = threading.Lock()
_cancelled = set()


class ItemError(Exception):
    """One item's failure; retryable=False fails its job without further tries."""

    def __init__(self, message, retryable=True):
        super().__init__(message)
        self.retryable = retryable


def _send(message):
    line = json.dumps(message, ensure_ascii=False)
    with _lock:
        _out.write(line + "\n")
        _out.flush()


def log(message, id=None, level="info"):
    m = {"type": "log", "level": level, "message": str(message)}
    if id is not None:
        m["id"] = id
    _send(m)


def progress(id, fraction):
    _send({"type": "progress", "id": id, "fraction": float(fraction)})


def cancelled(id):
    if isinstance(id, dict):
        id = id.get("id")
    with _lock:
        return id in _cancelled


def _result(item_id, r):
    if isinstance(r, BaseException):
        return {"type": "result", "id": item_id, "ok": False, "error": str(r) or type(r).__name__,
                "retryable": getattr(r, "retryable", True)}
    if r is None:
        r = {}
    if not isinstance(r, dict):
        return {"type": "result", "id": item_id, "ok": False, "retryable": False,
                "error": "process returned %s, not a dict, for this item" % type(r).__name__}
    return {"type": "result", "id": item_id, "ok": True, "output": r}


def _reader(batches):
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            m = json.loads(line)
        except ValueError:
            print("baton_worker: ignoring a line that is not JSON: %r" % line[:200], file=sys.stderr)
            continue
        t = m.get("type")
        if t == "batch":
            batches.put(m)
        elif t == "cancel":
            with _lock:
                _cancelled.add(m.get("id"))
        elif t == "shutdown":
            break
    batches.put(None)


def serve(setup, process):
    """Runs the worker until Baton sends shutdown or closes stdin. Never returns normally."""
    global _out
    # The protocol gets the real stdout; print() and libraries' output go to stderr (the log).
    _out = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    model = setup() if setup is not None else None
    try:
        two = len(inspect.signature(process).parameters) >= 2
    except (TypeError, ValueError):
        two = False
    _send({"type": "ready"})
    batches = queue.Queue()
    threading.Thread(target=_reader, args=(batches,), daemon=True).start()
    while True:
        batch = batches.get()
        if batch is None:
            break
        items = []
        for it in batch.get("items", []):
            if cancelled(it.get("id")):
                _send(_result(it.get("id"), ItemError("cancelled", retryable=False)))
            else:
                items.append(it)
        if not items:
            continue
        try:
            results = process(model, items) if two else process(items)
        except Exception as e:  # the whole batch failed
            traceback.print_exc()
            results = [e] * len(items)
        if isinstance(results, dict):
            results = [results.get(it["id"], ItemError("process gave no result for this item")) for it in items]
        results = list(results) if results is not None else []
        if len(results) != len(items):
            err = ItemError("process returned %d results for %d items" % (len(results), len(items)))
            results = [err] * len(items)
        for it, r in zip(items, results):
            _send(_result(it["id"], r))
            with _lock:
                _cancelled.discard(it["id"])
    _out.flush()
    os._exit(0)
