"""Starts one `revsync sim` process for a fidelity client and reads what it prints.

`revsync sim <system>` prints its base URL and credentials, then `Ctrl-C to stop`; a
client script uses them exactly as a user would, and the process is stopped at exit.
"""

import atexit
import os
import re
import subprocess


class Sim:
    def __init__(self, system, people=0, rate_limit=None, extra=(), **world):
        """An empty system unless `people` or a world size (`companies`, `deals`, `tickets`,
        `subscriptions`) says how much of the generated demo world to load."""
        args = [os.environ.get("REVSYNC_BIN", "revsync"), "sim", system, "--people", str(people)]
        for part in ("companies", "deals", "tickets", "subscriptions"):
            args += [f"--{part}", str(world.pop(part, 0))]
        if world:
            raise TypeError(f"unknown world sizes: {sorted(world)}")
        if rate_limit is not None:
            args += ["--rate-limit", str(rate_limit)]
        args += list(extra)
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        atexit.register(self.stop)
        self.lines = []
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            if line.startswith("Ctrl-C"):
                break
        else:
            raise RuntimeError(f"revsync sim {system} exited early: {self.lines}")
        m = re.search(r"simulator: (\S+)", self.lines[0])
        self.url = m.group(1)
        self.text = "\n".join(self.lines)

    def value(self, key):
        """The value printed after `key:` (e.g. `token`, `client_secret`)."""
        m = re.search(rf"\b{re.escape(key)}: (\S+)", self.text)
        if not m:
            raise KeyError(f"{key} not in: {self.text}")
        return m.group(1)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def ok(case):
    print(f"ok {case}", flush=True)


def check(cond, what):
    if not cond:
        raise AssertionError(what)
