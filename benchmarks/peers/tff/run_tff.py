"""TensorFlow Federated 0.87 runner of a benchmark workload (see ../FORMAT.md).

    benchmarks/peers/tff/.venv/bin/python benchmarks/peers/tff/run_tff.py \
        --workload benchmarks/.cache/workloads/w1.json --out result.json [--rounds N]

Builds the workload the way TFF's tutorials do: per client a `tf.data.Dataset` of its examples,
`.repeat(epochs).shuffle(shuffle_buffer, seed=1).batch(batch_size).map(preprocess)`, a Keras
model wrapped by `tff.learning.models.from_keras_model`, and
`tff.learning.algorithms.build_weighted_fed_avg` with `tff.learning.optimizers.build_sgdm` on
both sides, run in TFF's default execution context (the local C++ runtime, which TFF runs in a
`worker_binary` child process). Round r trains the cohort `cohorts[r]`; each `process.next` call
is timed with `time.perf_counter()`.
"""

import time

_T_TOP = time.time()  # before any other import: the runner's own start

import argparse
import collections
import json
import os
import platform
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's C++ INFO/WARNING noise


def _process_start_epoch():
    """This process's start time (epoch seconds) from /proc, or None where there is no /proc."""
    try:
        with open("/proc/self/stat") as f:
            stat = f.read()
        # Field 22 (starttime, clock ticks since boot); fields after the ')' of comm start at 3.
        starttime_ticks = int(stat.rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as f:
            btime = next(int(line.split()[1]) for line in f if line.startswith("btime "))
        return btime + starttime_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workload", required=True, help="PATH/TO/<name>.json (the .npz beside it)")
    p.add_argument("--out", required=True, help="result JSON to write")
    p.add_argument("--rounds", type=int, default=None, help="run only the first N rounds")
    p.add_argument("--setting", default="", help='free-form label, e.g. "num_cpus=2"')
    return p.parse_args()


def main():
    args = _parse_args()
    proc_start = _process_start_epoch()
    t0 = proc_start if proc_start is not None and proc_start <= _T_TOP else _T_TOP

    import numpy as np
    import tensorflow as tf
    import tensorflow_federated as tff

    t_imported = time.time()

    # ---- workload -------------------------------------------------------------------------
    with open(args.workload) as f:
        wl = json.load(f)
    npz_path = os.path.splitext(args.workload)[0] + ".npz"
    with np.load(npz_path) as z:
        x_all = np.asarray(z["x"], dtype=np.float32)
        y_all = np.asarray(z["y"], dtype=np.int32)
        offsets = np.asarray(z["offsets"], dtype=np.int64)
    n_rounds = wl["rounds"] if args.rounds is None else min(args.rounds, wl["rounds"])
    cohorts = wl["cohorts"][:n_rounds]
    model_kind = wl["model"]
    num_classes = int(wl["num_classes"])
    epochs, batch_size = int(wl["epochs"]), int(wl["batch_size"])
    shuffle_buffer = int(wl["shuffle_buffer"])

    if model_kind == "linear":
        def preprocess(batch):
            return collections.OrderedDict(
                x=tf.reshape(batch["pixels"], [-1, 784]), y=batch["label"])
    elif model_kind == "cnn_dropout":
        def preprocess(batch):
            return collections.OrderedDict(
                x=tf.expand_dims(batch["pixels"], -1), y=batch["label"])
    else:
        raise SystemExit(f"unknown model {model_kind!r}")

    def client_dataset(i):
        lo, hi = int(offsets[i]), int(offsets[i + 1])
        ds = tf.data.Dataset.from_tensor_slices(
            collections.OrderedDict(pixels=x_all[lo:hi], label=y_all[lo:hi]))
        ds = ds.repeat(epochs)
        if shuffle_buffer > 0:
            ds = ds.shuffle(shuffle_buffer, seed=1)
        return ds.batch(batch_size).map(preprocess)

    datasets = {}
    for cohort in cohorts:
        for i in cohort:
            if i not in datasets:
                datasets[i] = client_dataset(i)
    element_spec = datasets[cohorts[0][0]].element_spec

    # ---- model + FedAvg -------------------------------------------------------------------
    if model_kind == "linear":
        def create_keras_model():  # TFF's "Federated Learning for Image Classification" tutorial
            return tf.keras.models.Sequential([
                tf.keras.layers.InputLayer(input_shape=(784,)),
                tf.keras.layers.Dense(num_classes, kernel_initializer="zeros"),
                tf.keras.layers.Softmax(),
            ])
    else:
        from tensorflow_federated.python.simulation.baselines.emnist import emnist_models

        if num_classes != 62:
            raise SystemExit(f"cnn_dropout is the 62-class EMNIST model, got {num_classes}")

        def create_keras_model():
            return emnist_models.create_conv_dropout_model(only_digits=False)

    def model_fn():
        return tff.learning.models.from_keras_model(
            create_keras_model(),
            input_spec=element_spec,
            loss=tf.keras.losses.SparseCategoricalCrossentropy(),
            metrics=[tf.keras.metrics.SparseCategoricalAccuracy()],
        )

    process = tff.learning.algorithms.build_weighted_fed_avg(
        model_fn,
        client_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=wl["client_lr"]),
        server_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=wl["server_lr"]),
    )
    t_built = time.time()
    state = process.initialize()
    t_ready = time.time()
    startup_s = t_ready - t0
    print(f"[tff] {wl['name']}: startup {startup_s:.2f} s (interpreter {_T_TOP - t0:.2f} s, "
          f"imports {t_imported - _T_TOP:.2f} s, "
          f"build {t_built - t_imported:.2f} s, initialize {t_ready - t_built:.2f} s)", flush=True)

    # ---- rounds ---------------------------------------------------------------------------
    rounds, mismatches = [], []
    expected = wl.get("examples_per_round") or []
    for r, cohort in enumerate(cohorts):
        data = [datasets[i] for i in cohort]
        t = time.perf_counter()
        result = process.next(state, data)
        s = time.perf_counter() - t
        state = result.state
        train = result.metrics["client_work"]["train"]
        examples = int(train["num_examples"])
        loss = float(train["loss"])
        rounds.append({"s": s, "examples": examples, "loss": loss})
        if r < len(expected) and examples != expected[r]:
            mismatches.append(f"round {r + 1}: {examples} examples, workload says {expected[r]}")
        acc = train.get("sparse_categorical_accuracy")
        acc_txt = f" acc {float(acc):.4f}" if acc is not None else ""
        print(f"[tff] {wl['name']} round {r + 1}/{n_rounds}: {s:.3f} s, {examples} examples, "
              f"loss {loss:.4f}{acc_txt}", flush=True)

    # ---- result ---------------------------------------------------------------------------
    versions = {"python": platform.python_version(), "tensorflow": tf.__version__,
                "tensorflow_federated": tff.__version__, "numpy": np.__version__}
    try:
        import jax
        versions["jax"] = jax.__version__
        import jaxlib
        versions["jaxlib"] = jaxlib.__version__
    except Exception as e:  # noqa: BLE001 - version reporting only
        versions["jax"] = f"unavailable ({type(e).__name__})"
    try:
        import keras
        versions["keras"] = keras.__version__
    except Exception:  # noqa: BLE001 - version reporting only
        pass

    notes = [
        "TFF default execution context (sync local C++ runtime): TFF starts a worker_binary child "
        "process on first execution and does not stop it when the runner exits",
        "startup_s from the process start ("
        + ("/proc/self/stat" if t0 != _T_TOP else "top of run_tff.py; /proc unavailable")
        + f") to process.initialize() done: interpreter start to top of run_tff.py "
        f"{_T_TOP - t0:.2f} s, imports {t_imported - _T_TOP:.2f} s, workload + datasets "
        f"+ build_weighted_fed_avg {t_built - t_imported:.2f} s, initialize {t_ready - t_built:.2f} s",
        "round s: wall time of process.next (perf_counter), including TFF's serialization of the "
        "cohort's tf.data datasets",
        "jax/jaxlib 0.4.13 installed instead of TFF 0.87's pinned 0.4.14 (jaxlib 0.4.14 is not on PyPI)",
        f"client data: from_tensor_slices.repeat({epochs})"
        + (f".shuffle({shuffle_buffer}, seed=1)" if shuffle_buffer > 0 else "")
        + f".batch({batch_size}).map(preprocess); client/server optimizer build_sgdm "
        f"(lr {wl['client_lr']} / {wl['server_lr']}, no momentum)",
    ]
    if n_rounds != wl["rounds"]:
        notes.append(f"--rounds {n_rounds}: ran {n_rounds} of the workload's {wl['rounds']} rounds")
    if mismatches:
        notes.append("examples differ from the workload's examples_per_round: " + "; ".join(mismatches))
        print("[tff] WARNING: " + notes[-1], file=sys.stderr, flush=True)

    out = {"system": "TFF", "version": tff.__version__, "workload": wl["name"],
           "setting": args.setting, "versions": versions, "startup_s": startup_s,
           "rounds": rounds, "notes": notes}
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    os.replace(tmp, args.out)
    print(f"[tff] wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
