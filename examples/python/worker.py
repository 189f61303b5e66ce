#!/usr/bin/env python3
"""A netnode task worker in Python, with the standard library only.

It serves skills through the control socket of a running `netnode run`:
the node advertises them to the mesh, places tasks from any node on them,
and pushes each task here; the worker runs it in a thread, reports progress
events, and posts the result. See docs/TASKS.md, "Workers in other
languages".

    python3 worker.py --control /run/user/1000/netnode.sock

and from any node of the mesh:

    netnode task send --skill wordcount --params '{"text": "to be or not to be"}'

The protocol is the control socket's: one JSON request a line, answered by
one or more JSON lines with the same id. One connection calls the
streaming method worker.serve (the node answers "ready", then a "task" for
each task and a "cancel" when one's context ends); a second connection
posts worker.event and worker.result, since the first is busy.
"""

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time


class NodeError(Exception):
    """An error answer from the node: code and message."""

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code


class TaskError(Exception):
    """Raised by a handler to fail its task with a code, for example
    DEPENDENCY_MISSING or LIMIT_EXCEEDED (see docs/TASKS.md)."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


class Connection:
    """One connection to the node's control socket."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.reader = self.sock.makefile("rb")
        self.next_id = 0
        self.lock = threading.Lock()

    def _send(self, method, params):
        self.next_id += 1
        line = json.dumps({"id": self.next_id, "method": method, "params": params})
        self.sock.sendall(line.encode() + b"\n")
        return self.next_id

    def _answers(self, want):
        """Yield (result, more) for the answer lines of request want."""
        while True:
            line = self.reader.readline()
            if not line:
                raise ConnectionError("the node closed the control connection")
            resp = json.loads(line)
            if resp.get("error"):
                err = resp["error"]
                raise NodeError(err.get("code"), err.get("message"))
            if resp.get("id") != want:
                raise ConnectionError(f"answer for request {resp.get('id')}, want {want}")
            yield resp.get("result"), resp.get("more", False)

    def call(self, method, params):
        """A one-shot request: its final result."""
        with self.lock:
            rid = self._send(method, params)
            for result, more in self._answers(rid):
                if not more:
                    return result

    def stream(self, method, params):
        """A streaming request: yields each intermediate result."""
        rid = self._send(method, params)
        for result, more in self._answers(rid):
            if not more:
                return
            yield result

    def close(self):
        self.sock.close()


class Task:
    """One task, as a handler sees it."""

    def __init__(self, msg, post):
        self.id = msg["id"]
        self.skill = msg["skill"]
        self.params = msg.get("params")
        self.priority = msg.get("priority", 0)
        self.deadline = msg.get("deadline")
        self.origin = msg.get("origin")
        self.cancelled = threading.Event()
        self._post = post

    def emit(self, name, data=None):
        """Send a progress event. It raises NodeError if the contract
        refuses it or the task has ended."""
        self._post.call("worker.event", {"id": self.id, "name": name, "data": data})


class Worker:
    """Serves skills: name -> (declaration, handler). A handler takes a
    Task and returns its output, or (output, status); it raises TaskError
    to fail with a code."""

    def __init__(self, control, skills):
        self.control = control
        self.skills = skills
        self.tasks = {}
        self.lock = threading.Lock()

    def run(self):
        serve = Connection(self.control)
        post = Connection(self.control)
        decls = [dict(decl, name=name) for name, (decl, _) in self.skills.items()]
        try:
            for msg in serve.stream("worker.serve", {"skills": decls}):
                kind = msg.get("type")
                if kind == "ready":
                    print("serving", ", ".join(msg["skills"]), flush=True)
                elif kind == "task":
                    task = Task(msg, post)
                    with self.lock:
                        self.tasks[task.id] = task
                    threading.Thread(target=self._run, args=(task, post), daemon=True).start()
                elif kind == "cancel":
                    with self.lock:
                        task = self.tasks.get(msg["id"])
                    if task:
                        task.cancelled.set()
        finally:
            serve.close()
            post.close()

    def _run(self, task, post):
        _, handler = self.skills[task.skill]
        result = {"id": task.id}
        try:
            out = handler(task)
            status = "success"
            if isinstance(out, tuple):
                out, status = out
            result.update(output=out, status=status)
        except TaskError as e:
            result["error"] = {"code": e.code, "message": str(e)}
        except Exception as e:  # a bug in the handler: HANDLER_ERROR
            result["error"] = {"code": "HANDLER_ERROR", "message": f"{type(e).__name__}: {e}"}
        finally:
            with self.lock:
                self.tasks.pop(task.id, None)
        try:
            post.call("worker.result", result)
        except NodeError as e:
            # The task ended meanwhile (cancelled, deadline): nobody waits.
            print(f"task {task.id}: result not taken: {e}", file=sys.stderr, flush=True)


def wordcount(task):
    """Counts the words of {"text": ...}, one progress event per line."""
    text = task.params["text"]
    lines = text.splitlines() or [""]
    words = 0
    for i, line in enumerate(lines, 1):
        if task.cancelled.is_set():
            raise TaskError("CANCELLED", "cancelled")
        words += len(line.split())
        task.emit("progress", {"line": i, "of": len(lines)})
    if task.params.get("fail"):
        raise TaskError("DEPENDENCY_MISSING", "asked to fail: " + task.params["fail"])
    return {"words": words}, ("success" if words else "empty")


def sleeper(task):
    """Sleeps {"seconds": n} unless cancelled first."""
    deadline = time.monotonic() + float(task.params.get("seconds", 1))
    while time.monotonic() < deadline:
        if task.cancelled.wait(0.05):
            raise TaskError("CANCELLED", "cancelled while sleeping")
    return {"slept": task.params.get("seconds", 1)}


SKILLS = {
    "wordcount": (
        {
            "version": "1.0.0",
            "description": "count the words of a text",
            "input": {
                "type": "object",
                "properties": {"text": {"type": "string"}, "fail": {"type": "string"}},
                "required": ["text"],
            },
            "output": {"type": "object", "properties": {"words": {"type": "integer"}}, "required": ["words"]},
            "events": {"progress": {"type": "object", "required": ["line", "of"]}},
            "statuses": ["success", "empty"],
        },
        wordcount,
    ),
    "sleep": ({"input": {"type": "object"}}, sleeper),
}


def default_control():
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "netnode.sock")
    return f"/tmp/netnode-{os.getuid()}.sock"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--control", default=default_control(), help="the node's control socket")
    ap.add_argument("--prefix", default="", help="prefix for the skill names (py. gives py.wordcount)")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    skills = {args.prefix + name: s for name, s in SKILLS.items()}
    try:
        Worker(args.control, skills).run()
    except (ConnectionError, NodeError, OSError) as e:
        print(f"worker: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
