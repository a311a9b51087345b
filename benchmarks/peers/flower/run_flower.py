"""Flower peer of the benchmark harness (see ../FORMAT.md).

    python run_flower.py --workload PATH/w1.json --out result.json \
        [--rounds N] [--num-cpus 1|2] [--centralized]

Federated mode: Flower's Simulation Runtime with its Ray backend, driven through
``flwr.simulation.run_simulation`` with a message-API ``ServerApp`` (a FedAvg strategy
from ``flwr.serverapp.strategy``) and ``ClientApp``: the in-process Python entry point to
the same runtime that ``flwr run`` uses (the older ``start_simulation`` has been
deprecated since Flower 1.13). Clients are PyTorch models trained with plain SGD.

``--centralized``: no Flower: one PyTorch process trains one model on exactly the batches
of each round's cohort clients, one after another (the centralized PyTorch floor).

This file is also imported as module ``run_flower`` by Ray's actor processes, so that the
``ClientApp`` and its data cache live in an importable module (functions defined in
``__main__`` would be pickled by value on every call, their globals with them).
"""

import time

_T0_WALL = time.time()  # process start, before any heavy import

import argparse  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402

# No network here: keep Flower's and Ray's usage reporting from trying to phone home.
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import (  # noqa: E402
    BatchSampler,
    DataLoader,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
)

SEED = 0


# --------------------------------------------------------------------------- models


def make_model(kind: str, num_classes: int, seed: int = SEED) -> nn.Module:
    """The FORMAT.md models; outputs are logits (softmax lives in the loss)."""
    torch.manual_seed(seed)
    if kind == "linear":
        model = nn.Sequential(nn.Flatten(), nn.Linear(784, num_classes))
        nn.init.zeros_(model[1].weight)
        nn.init.zeros_(model[1].bias)
        return model
    if kind == "cnn_dropout":
        model = nn.Sequential(
            nn.Conv2d(1, 32, 3),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Dropout(0.25),
            nn.Flatten(),
            nn.Linear(9216, 128),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(128, num_classes),
        )
        # Keras defaults: Glorot uniform kernels, zero biases.
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        return model
    raise ValueError(f"unknown model {kind!r}")


# ----------------------------------------------------------------------------- data

_DATA: dict = {}  # per process: npz path -> (x, y, offsets)


def load_data(npz_path: str, model_kind: str):
    """Whole workload as tensors, loaded once per process."""
    key = (npz_path, model_kind)
    if key not in _DATA:
        with np.load(npz_path) as z:
            x = torch.from_numpy(np.ascontiguousarray(z["x"], dtype=np.float32))
            y = torch.from_numpy(z["y"].astype(np.int64))
            offsets = z["offsets"].astype(np.int64)
        x = x.reshape(-1, 1, 28, 28) if model_kind == "cnn_dropout" else x.reshape(-1, 784)
        _DATA[key] = (x, y, offsets)
    return _DATA[key]


def make_loader(x, y, epochs: int, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
    """``dataset.repeat(epochs).shuffle(...).batch(batch_size)``: the examples repeated
    ``epochs`` times, shuffled (seeded, whole-dataset shuffle instead of TF's 100-example
    buffer), cut into batches of ``batch_size`` with a partial last batch.

    The sampler yields whole index batches (``batch_size=None``), so each batch is one
    tensor gather instead of ``batch_size`` single-example fetches plus a collate."""
    idx = torch.arange(len(y)).repeat(epochs)
    ds = TensorDataset(x[idx], y[idx])
    if shuffle:
        gen = torch.Generator().manual_seed(seed)
        sampler = RandomSampler(ds, generator=gen)
    else:
        sampler = SequentialSampler(ds)
    return DataLoader(ds, sampler=BatchSampler(sampler, batch_size, drop_last=False), batch_size=None)


def train_steps(model: nn.Module, opt: torch.optim.Optimizer, loader: DataLoader):
    """Plain SGD over the loader; returns (sum of batch-mean loss x batch size, examples)."""
    model.train()
    loss_sum, n = 0.0, 0
    for xb, yb in loader:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        b = len(yb)
        loss_sum += loss.item() * b
        n += b
    return loss_sum, n


def client_seed(round_idx: int, client_idx: int) -> int:
    return SEED * 1_000_003 + round_idx * 100_003 + client_idx


def client_data(x, y, offsets, c: int):
    lo, hi = int(offsets[c]), int(offsets[c + 1])
    return x[lo:hi], y[lo:hi]


# ------------------------------------------------------------------- Flower client

_MODELS: dict = {}  # per actor process: (kind, classes) -> model, reused across calls


def client_train(msg, context):
    """ClientApp ``@app.train()``: load the server model, train the workload client
    named in the message's config, reply with the new weights and metrics."""
    from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict

    cfg = msg.content["config"]
    kind, num_classes = str(cfg["model"]), int(cfg["num-classes"])
    c, rnd = int(cfg["client-index"]), int(cfg["server-round"])
    x, y, offsets = load_data(str(cfg["npz"]), kind)
    xc, yc = client_data(x, y, offsets, c)

    key = (kind, num_classes)
    if key not in _MODELS:
        _MODELS[key] = make_model(kind, num_classes)
    model = _MODELS[key]
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    torch.manual_seed(client_seed(rnd, c))  # dropout masks
    opt = torch.optim.SGD(model.parameters(), lr=float(cfg["lr"]))
    loader = make_loader(
        xc, yc, int(cfg["epochs"]), int(cfg["batch-size"]), bool(cfg["shuffle"]), client_seed(rnd, c)
    )
    loss_sum, n = train_steps(model, opt, loader)

    metrics = MetricRecord(
        {
            "num-examples": n,  # FedAvg's weight (epochs x the client's examples)
            "train_loss": loss_sum / n,
            "client-index": c,
            "torch-threads": torch.get_num_threads(),
            "pid": os.getpid(),
        }
    )
    content = RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": metrics})
    return Message(content=content, reply_to=msg)


def make_client_app():
    from flwr.clientapp import ClientApp

    app = ClientApp()
    app.train()(client_train)
    return app


# ------------------------------------------------------------------- Flower server


def make_server_app(wl: dict, npz: str, num_rounds: int, num_clients: int, out: dict):
    import ray
    from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
    from flwr.serverapp import ServerApp
    from flwr.serverapp.strategy import FedAvg

    cohorts = wl["cohorts"]

    def train_metrics(records, weight_key):
        """Example-weighted mean training loss (the per-client ids and pids that the
        clients report are not averaged)."""
        ms = [next(iter(r.metric_records.values())) for r in records]
        total = sum(m[weight_key] for m in ms)
        return MetricRecord(
            {"train_loss": sum(m["train_loss"] * m[weight_key] for m in ms) / total, "num-examples": total}
        )

    class CohortFedAvg(FedAvg):
        """FedAvg (example-weighted mean of the client models) whose round r trains
        exactly ``cohorts[r]``: workload client i is always served by the i-th node of
        the sorted node ids and its message's config names the client's data."""

        def configure_train(self, server_round, arrays, config, grid):
            self._t0 = time.perf_counter()
            if server_round == 1:
                out["first_round_wall"] = time.time()
            node_ids = sorted(grid.get_node_ids())
            if len(node_ids) != num_clients:
                raise RuntimeError(f"{len(node_ids)} nodes, expected {num_clients}")
            cohort = cohorts[server_round - 1]
            messages = []
            for c in cohort:
                cfg = ConfigRecord(dict(config))
                cfg["server-round"] = server_round
                cfg["client-index"] = c
                messages.append(
                    Message(
                        content=RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: cfg}),
                        message_type=MessageType.TRAIN,
                        dst_node_id=node_ids[c],
                    )
                )
            return messages

        def aggregate_train(self, server_round, replies):
            replies = list(replies)
            failed = [m for m in replies if m.has_error()]
            if failed:
                raise RuntimeError(f"round {server_round}: {len(failed)} client(s) failed: {failed[0].error.reason}")
            cohort = cohorts[server_round - 1]
            if len(replies) != len(cohort):
                raise RuntimeError(f"round {server_round}: {len(replies)} replies for {len(cohort)} clients")
            arrays, metrics = super().aggregate_train(server_round, replies)
            ms = [next(iter(m.content.metric_records.values())) for m in replies]
            t1 = time.perf_counter()
            out["rounds"].append(
                {"s": t1 - self._t0, "examples": int(metrics["num-examples"]), "loss": float(metrics["train_loss"])}
            )
            out["client_threads"].update(int(m["torch-threads"]) for m in ms)
            out["client_pids"].update(int(m["pid"]) for m in ms)
            if sorted(int(m["client-index"]) for m in ms) != sorted(cohort):
                raise RuntimeError(f"round {server_round}: replies are not from the cohort")
            return arrays, metrics

    app = ServerApp()

    @app.main()
    def main(grid, context):
        # The Simulation Runtime starts the ServerApp thread before it registers the
        # nodes and starts Ray: wait for both, so that round 1 starts on a live engine.
        while not ray.is_initialized() or len(list(grid.get_node_ids())) < num_clients:
            time.sleep(0.005)
        strategy = CohortFedAvg(
            fraction_evaluate=0.0,  # no federated evaluation
            min_available_nodes=num_clients,
            train_metrics_aggr_fn=train_metrics,
        )
        model = make_model(wl["model"], wl["num_classes"])
        train_config = ConfigRecord(
            {
                "npz": npz,
                "model": wl["model"],
                "num-classes": int(wl["num_classes"]),
                "lr": float(wl["client_lr"]),
                "epochs": int(wl["epochs"]),
                "batch-size": int(wl["batch_size"]),
                "shuffle": bool(wl["shuffle_buffer"] > 0),
            }
        )
        strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord(model.state_dict()),
            num_rounds=num_rounds,
            train_config=train_config,
        )

    return app


def run_federated(args, wl: dict, npz: str, num_rounds: int) -> dict:
    import flwr
    import ray
    from flwr.simulation import run_simulation

    # The ClientApp must come from an importable module: Ray's actors import it.
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    mod = importlib.import_module("run_flower")

    with np.load(npz) as z:
        num_clients = len(z["offsets"]) - 1
    out = {"rounds": [], "client_threads": set(), "client_pids": set()}

    server_app = make_server_app(wl, npz, num_rounds, num_clients, out)
    backend_config = {
        "client_resources": {"num_cpus": args.num_cpus, "num_gpus": 0.0},
        "init_args": {"include_dashboard": False},
    }
    try:
        run_simulation(
            server_app=server_app,
            client_app=mod.make_client_app(),
            num_supernodes=num_clients,
            backend_name="ray",
            backend_config=backend_config,
        )
    finally:
        # The runtime terminates its actors but leaves Ray itself (gcs_server, raylet,
        # idle workers) running: stop it.
        if ray.is_initialized():
            ray.shutdown()

    if len(out["rounds"]) != num_rounds:
        raise RuntimeError(f"simulation ended after {len(out['rounds'])} of {num_rounds} rounds")
    return {
        "system": "Flower",
        "version": flwr.__version__,
        "setting": f"num_cpus={args.num_cpus}",
        "versions": {
            "python": platform.python_version(),
            "flwr": flwr.__version__,
            "ray": ray.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
        },
        "startup_s": out["first_round_wall"] - _T0_WALL,
        "rounds": out["rounds"],
        "notes": [
            "flwr.simulation.run_simulation (Simulation Runtime, Ray backend) with a message-API "
            "ServerApp/ClientApp; client_resources num_cpus="
            f"{args.num_cpus} on {os.cpu_count()} CPUs, torch threads in the clients "
            f"{sorted(out['client_threads'])}, {len(out['client_pids'])} client process(es)",
            f"{num_clients} SuperNodes (one per workload client); a FedAvg subclass's "
            "configure_train sends round r's messages to exactly cohorts[r] (node i of the "
            "sorted node ids serves workload client i; the config names the client index); "
            "no federated evaluation",
            "FedAvg weights = num-examples (epochs x client examples); loss = example-weighted "
            "mean of the clients' mean training loss",
            "round s: perf_counter from configure_train to the end of aggregate_train; round 1 "
            "includes starting the Ray actor processes and their import of torch and the npz",
            "data: DataLoader over the examples repeated epochs times, seeded full shuffle "
            "(not a 100-example buffer), batches gathered whole via a BatchSampler",
            "startup_s: process start to round 1's configure_train (imports, Ray up, nodes "
            "registered, model built)",
        ],
    }


# --------------------------------------------------------------------- centralized


def run_centralized(args, wl: dict, npz: str, num_rounds: int) -> dict:
    x, y, offsets = load_data(npz, wl["model"])
    model = make_model(wl["model"], wl["num_classes"])
    opt = torch.optim.SGD(model.parameters(), lr=float(wl["client_lr"]))
    epochs, bs, shuffle = int(wl["epochs"]), int(wl["batch_size"]), wl["shuffle_buffer"] > 0
    rounds = []
    startup_s = time.time() - _T0_WALL
    for r in range(num_rounds):
        t0 = time.perf_counter()
        loss_sum, n = 0.0, 0
        for c in wl["cohorts"][r]:
            torch.manual_seed(client_seed(r + 1, c))
            xc, yc = client_data(x, y, offsets, c)
            ls, k = train_steps(model, opt, make_loader(xc, yc, epochs, bs, shuffle, client_seed(r + 1, c)))
            loss_sum += ls
            n += k
        rounds.append({"s": time.perf_counter() - t0, "examples": n, "loss": loss_sum / n})
    return {
        "system": "PyTorch (centralized)",
        "version": torch.__version__,
        "setting": f"threads={torch.get_num_threads()}",
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__},
        "startup_s": startup_s,
        "rounds": rounds,
        "notes": [
            "one process, one model: each round trains the batches of every cohort client "
            "(epochs x batches, same loader and seeds as the Flower clients) one after another "
            "with plain SGD; no Flower, no aggregation",
            f"torch.get_num_threads()={torch.get_num_threads()} (default)",
        ],
    }


# ----------------------------------------------------------------------------- main


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workload", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--num-cpus", type=int, choices=(1, 2), default=1)
    p.add_argument("--centralized", action="store_true")
    args = p.parse_args(argv)

    wl_path = os.path.abspath(args.workload)
    with open(wl_path) as f:
        wl = json.load(f)
    npz = os.path.splitext(wl_path)[0] + ".npz"
    num_rounds = wl["rounds"] if args.rounds is None else min(args.rounds, wl["rounds"])

    run = run_centralized if args.centralized else run_federated
    result = run(args, wl, npz, num_rounds)
    result = {
        "system": result["system"],
        "version": result["version"],
        "workload": wl["name"],
        "setting": result["setting"],
        "versions": result["versions"],
        "startup_s": result["startup_s"],
        "rounds": result["rounds"],
        "notes": result["notes"],
    }
    for r, rd in enumerate(result["rounds"]):
        want = wl["examples_per_round"][r]
        if rd["examples"] != want:
            raise RuntimeError(f"round {r + 1}: trained {rd['examples']} examples, workload says {want}")
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(
        f"{result['system']} {wl['name']} {result['setting']}: startup {result['startup_s']:.2f} s, "
        + ", ".join(f"{rd['s']:.3f}" for rd in result["rounds"])
        + f" s/round, final loss {result['rounds'][-1]['loss']:.4f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
