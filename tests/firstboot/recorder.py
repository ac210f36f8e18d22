"""A recording runner for first-boot tests (imported by driver.py, in the child).

Every command is appended to CTL/calls.jsonl. ``sh`` (the k3s install script)
really runs, so the stand-in script served by the test can record what it
got; everything else answers from CTL/responses.json:
``[{"prefix": [...], "responses": [{"rc": 0, "stdout": "..."}, ...]}]`` --
the n-th matching call gets the n-th response (the last one repeats).
"""

from __future__ import annotations

import json
import os

from firstboot.runner import CommandError, Result, Runner


class Recorder(Runner):
    def __init__(self, ctl_dir):
        self.ctl = ctl_dir
        self.calls_path = os.path.join(ctl_dir, "calls.jsonl")
        with open(os.path.join(ctl_dir, "responses.json"), encoding="utf-8") as fh:
            self.rules = json.load(fh)

    def _previous(self, prefix):
        n = 0
        try:
            with open(self.calls_path, encoding="utf-8") as fh:
                for line in fh:
                    if json.loads(line)["argv"][: len(prefix)] == prefix:
                        n += 1
        except OSError:
            pass
        return n

    def run(self, argv, *, env=None, timeout=None, check=True):
        argv = [str(a) for a in argv]
        rule = next((r for r in self.rules if argv[: len(r["prefix"])] == r["prefix"]), None)
        seen = self._previous(rule["prefix"]) if rule else 0
        with open(self.calls_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"argv": argv, "env": dict(env or {})}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        if argv[0] == "sh":
            return super().run(argv, env=env, timeout=timeout, check=check)
        resp = {"rc": 0, "stdout": ""}
        if rule:
            seq = rule["responses"]
            resp = seq[min(seen, len(seq) - 1)]
        res = Result(argv, int(resp.get("rc", 0)), resp.get("stdout", ""), resp.get("stderr", ""))
        if check and res.returncode != 0:
            raise CommandError(argv, res.returncode, res.stderr or res.stdout)
        return res
