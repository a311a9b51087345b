"""A TFF 0.87 peer script run in the benchmark peers' environment (`peers/tff/setup.sh`) as a
process of its own, driven one command at a time: each answer is a line of JSON. Benchmarks
that time TFF in alternating rounds with federax share it."""

from __future__ import annotations

import json
import pathlib
import subprocess

PEERS = pathlib.Path(__file__).resolve().parent / "peers" / "tff"
TFF_PYTHON = PEERS / ".venv" / "bin" / "python"


class TffPeer:
  """`peers/tff/<script> *args` in its own process; `ready` is its first answer."""

  def __init__(self, script: str, *args: str):
    if not TFF_PYTHON.exists():
      raise FileNotFoundError(f"no TFF environment at {TFF_PYTHON}: run "
                              "benchmarks/peers/tff/setup.sh first")
    self.process = subprocess.Popen(
        [str(TFF_PYTHON), str(PEERS / script), *args], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    self.ready = self._answer()

  def _answer(self) -> dict:
    line = self.process.stdout.readline()
    if not line:
      raise RuntimeError("the TFF runner stopped; run it by hand to see why")
    return json.loads(line)

  def __call__(self, command: str) -> dict:
    self.process.stdin.write(command + "\n")
    self.process.stdin.flush()
    return self._answer()

  def close(self) -> None:
    self.process.stdin.write("quit\n")
    self.process.stdin.close()
    self.process.wait(timeout=60)
