"""The benchmark workloads, written once as files that every system reads (peers/FORMAT.md).

    python -m benchmarks export [--data-dir ../shared/data] [--out benchmarks/.cache/workloads]

- W1, TFF's seed tutorial: the 10 first FEMNIST writers (sorted ids) with digit examples, their
  digits only, 5 epochs, shuffle buffer 100, batch 20, linear 784 -> 10 from zeros, client SGD
  0.02, server SGD 1.0, 10 rounds of the same 10 clients.
- W2, cross-device CNN: TFF's EMNIST `cnn_dropout`, 62 classes, 10 writers a round drawn by
  `UniformSampler(seed=0)` from all train writers, 1 epoch, shuffle buffer 100, batch 20, client
  SGD 10**-1.5, server SGD 1.0, 20 rounds.
- W3 (federax only, generated, not exported): 1,000 clients of 100 FedProx Synthetic(1,1)
  examples, multinomial logistic regression, 1 epoch of batch 10, 1,000 rounds of all clients.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Optional

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CACHE = ROOT / "benchmarks" / ".cache" / "workloads"


@dataclasses.dataclass(frozen=True)
class Workload:
  """One exported workload: its JSON spec and the examples of every client it may train."""

  spec: dict
  x: np.ndarray          # float32 [N, 28, 28]
  y: np.ndarray          # int32 [N]
  offsets: np.ndarray    # int64 [C + 1]
  client_ids: np.ndarray

  @property
  def name(self) -> str:
    return self.spec["name"]

  def client(self, i: int) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = self.offsets[i], self.offsets[i + 1]
    return self.x[lo:hi], self.y[lo:hi]

  def with_rounds(self, rounds: Optional[int]) -> "Workload":
    if rounds is None:
      return self
    spec = dict(self.spec, rounds=rounds, cohorts=self.spec["cohorts"][:rounds],
                examples_per_round=self.spec["examples_per_round"][:rounds])
    return dataclasses.replace(self, spec=spec)


SPECS = {
    "w1": dict(name="w1", model="linear", num_classes=10, rounds=10, epochs=5,
               shuffle_buffer=100, batch_size=20, client_lr=0.02, server_lr=1.0),
    "w2": dict(name="w2", model="cnn_dropout", num_classes=62, rounds=20, epochs=1,
               shuffle_buffer=100, batch_size=20, client_lr=10**-1.5, server_lr=1.0),
}


def _digits(stack: dict) -> dict:
  keep = stack["label"] < 10
  return {k: v[keep] for k, v in stack.items()}


def _w1_clients(data_dir: pathlib.Path, smoke: bool):
  from federax.simulation.datasets import femnist
  if smoke:  # Lazy: parses only the shards of the first writers, not all of them for digits.
    train, _ = femnist.load_data(data_dir / "femnist-leaf")
    ids = sorted(train.client_ids)[:2]
    return ids, [_digits(train.create_dataset(c).to_stacked()) for c in ids], [[0, 1]]
  train, _ = femnist.load_data(data_dir / "femnist-leaf", only_digits=True)
  ids = sorted(train.client_ids)[:10]
  return ids, [train.create_dataset(c).to_stacked() for c in ids], [list(range(10))] * 10


def _w2_clients(data_dir: pathlib.Path, smoke: bool):
  from federax.simulation.datasets import femnist
  from federax.simulation.sampling import UniformSampler
  train, _ = femnist.load_data(data_dir / "femnist-leaf")
  ids = list(train.client_ids)
  if smoke:
    ids = ids[:2]
    return ids, [train.create_dataset(c).to_stacked() for c in ids], [[0, 1]]
  sampler = UniformSampler(ids, 10, seed=0)
  index = {c: i for i, c in enumerate(ids)}
  cohorts = [[index[c] for c in sampler.sample(r)] for r in range(SPECS["w2"]["rounds"])]
  return ids, [train.create_dataset(c).to_stacked() for c in ids], cohorts


def export(name: str, data_dir: pathlib.Path = DATA, out: pathlib.Path = CACHE,
           smoke: bool = False) -> pathlib.Path:
  """Writes `<out>/<name>.{npz,json}`; returns the JSON's path.

  With `smoke`, a tiny version: 2 clients, 1 round, 1 epoch (the test suite's harness check).
  """
  ids, stacks, cohorts = {"w1": _w1_clients, "w2": _w2_clients}[name](data_dir, smoke)
  counts = np.array([len(s["label"]) for s in stacks])
  spec = dict(SPECS[name], cohorts=cohorts, rounds=len(cohorts))
  if smoke:
    spec.update(epochs=1, smoke=True)
  spec.update(examples_per_round=[int(spec["epochs"] * counts[c].sum()) for c in cohorts])
  out.mkdir(parents=True, exist_ok=True)
  np.savez(out / f"{name}.npz", x=np.concatenate([s["pixels"] for s in stacks]).astype(np.float32),
           y=np.concatenate([s["label"] for s in stacks]).astype(np.int32),
           offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
           client_ids=np.array(ids))
  path = out / f"{name}.json"
  path.write_text(json.dumps(spec, indent=1) + "\n")
  return path


def load(path: pathlib.Path | str) -> Workload:
  """Reads `<name>.json` and the `.npz` beside it."""
  path = pathlib.Path(path)
  with np.load(path.with_suffix(".npz")) as arrays:
    return Workload(json.loads(path.read_text()), arrays["x"], arrays["y"], arrays["offsets"],
                    arrays["client_ids"])


def ensure(name: str, data_dir: pathlib.Path = DATA, out: pathlib.Path = CACHE) -> pathlib.Path:
  """The exported workload's JSON path, exporting it first if it is not there."""
  path = out / f"{name}.json"
  if not (path.exists() and path.with_suffix(".npz").exists()):
    export(name, data_dir, out)
  return path
