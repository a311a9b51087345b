"""Tests for `federax plot`: column selection, the PNG it writes, and its one-line errors."""

import csv
import struct
import sys

import pytest

from federax.cli import plot
from federax.cli.main import main

pytest.importorskip("matplotlib")

TRAIN_LOSS = "client_work/train/loss"
TRAIN_ACC = "client_work/train/sparse_categorical_accuracy"
EVAL = "evaluation/client_work/eval/current_round_metrics/"
EVAL_TOTAL = "evaluation/client_work/eval/total_rounds_metrics/"


def write_run(directory, rows, columns=None):
  """A run directory whose metrics.csv holds `rows` (dicts; missing keys are empty cells)."""
  directory.mkdir(parents=True, exist_ok=True)
  columns = columns or list(dict.fromkeys(k for row in rows for k in row))
  with open(directory / "metrics.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, columns)
    writer.writeheader()
    writer.writerows(rows)
  return directory


def tff_rows(rounds=5, eval_every=2, acc=TRAIN_ACC):
  """Rows as `federax train` writes them: round 0 evaluation only, evaluations every k rounds."""
  rows = [{"round": 0, EVAL + "loss": 2.3, EVAL + "sparse_categorical_accuracy": 0.1}]
  for r in range(1, rounds + 1):
    row = {"round": r, TRAIN_LOSS: 2.0 / r, acc: 1 - 1 / (r + 1),
           "client_work/train/num_examples": 640, "aggregator/mean_value": 0.0,
           "finalizer/update_non_finite": 0, "training_time_in_seconds": 0.5}
    if r % eval_every == 0:
      row.update({EVAL + "loss": 2.1 / r, EVAL + "sparse_categorical_accuracy": 0.9 - 0.5 / r,
                  EVAL_TOTAL + "loss": 9.0})
    rows.append(row)
  columns = ["round", TRAIN_LOSS, acc, "client_work/train/num_examples",
             "aggregator/mean_value", "finalizer/update_non_finite", "training_time_in_seconds",
             EVAL + "loss", EVAL + "sparse_categorical_accuracy", EVAL_TOTAL + "loss"]
  return rows, columns


def png_size(path):
  data = path.read_bytes()
  assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
  return struct.unpack(">II", data[16:24])


EXPECTED_SIZE = (int(plot.FIGSIZE[0] * plot.DPI), int(plot.FIGSIZE[1] * plot.DPI))


def test_select_metric_prefers_train_and_current_round():
  names = ["round", "client_work/train/num_examples", EVAL_TOTAL + "loss", EVAL + "loss",
           "client_work/mean_loss", TRAIN_LOSS, TRAIN_ACC, "client_work/train/top_5_accuracy",
           EVAL + "sparse_categorical_accuracy"]
  assert plot.select_metric(names, "loss") == TRAIN_LOSS
  assert plot.select_metric(names, "loss", evaluation=True) == EVAL + "loss"
  assert plot.select_metric(names, "accuracy") == TRAIN_ACC
  assert plot.select_metric(names, "accuracy", evaluation=True) == (
      EVAL + "sparse_categorical_accuracy")
  assert plot.select_metric(["round", "num_examples"], "accuracy") is None
  with pytest.raises(ValueError, match="kind must be one of"):
    plot.select_metric(names, "recall")


def test_read_metrics_skips_empty_cells(tmp_path):
  rows, columns = tff_rows(rounds=4, eval_every=2)
  series = plot.read_metrics(write_run(tmp_path / "run", rows, columns))
  assert series["loss", False] == ([1, 2, 3, 4], [2.0, 1.0, 2.0 / 3, 0.5])
  assert series["loss", True] == ([0, 2, 4], [2.3, 1.05, 0.525])
  assert series["accuracy", True][0] == [0, 2, 4]


def test_read_metrics_keeps_the_last_row_of_a_round_written_twice(tmp_path):
  rows = [{"round": 1, "loss": 3.0}, {"round": 2, "loss": 2.0}, {"round": 2, "loss": 1.5},
          {"round": 3, "loss": 1.0}]
  assert plot.read_metrics(write_run(tmp_path / "run", rows))["loss", False] == (
      [1, 2, 3], [3.0, 1.5, 1.0])


def test_plot_one_run_defaults_to_run_dir_metrics_png(tmp_path, capsys):
  rows, columns = tff_rows()
  run = write_run(tmp_path / "fedavg", rows, columns)
  assert main(["plot", str(run)]) == 0
  assert capsys.readouterr().out.strip() == str(run / "metrics.png")
  assert png_size(run / "metrics.png") == EXPECTED_SIZE == (1200, 450)
  assert not (run / "metrics.png.part").exists()


def test_plot_three_runs_with_different_columns(tmp_path):
  rows_a, columns_a = tff_rows(rounds=6)
  rows_b, columns_b = tff_rows(rounds=3, eval_every=1, acc="client_work/train/accuracy")
  rows_c = [{"round": r, "loss": 1.0 / r} for r in range(1, 4)]  # No accuracy at all.
  runs = [write_run(tmp_path / "a" / "exp", rows_a, columns_a),
          write_run(tmp_path / "b" / "exp", rows_b, columns_b),
          write_run(tmp_path / "c", rows_c)]
  out = tmp_path / "plots" / "compare.png"  # Parent directories are created.
  assert main(["plot", *map(str, runs), "-o", str(out)]) == 0
  assert png_size(out) == EXPECTED_SIZE
  assert plot._labels(runs) == ["a/exp", "b/exp", "c"]  # Colliding names get their parent.


def test_plot_several_runs_defaults_to_comparison_png_here(tmp_path, monkeypatch):
  rows, columns = tff_rows(rounds=2)
  runs = [str(write_run(tmp_path / name, rows, columns)) for name in ("x", "y")]
  monkeypatch.chdir(tmp_path)
  assert main(["plot", *runs]) == 0
  assert png_size(tmp_path / plot.DEFAULT_COMPARISON) == EXPECTED_SIZE


def test_plot_runs_returns_the_path(tmp_path):
  rows, columns = tff_rows(rounds=2)
  run = write_run(tmp_path / "run", rows, columns)
  assert plot.plot_runs([run], tmp_path / "m.png") == tmp_path / "m.png"


def assert_one_line_error(capsys, *fragments):
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and err.startswith("federax plot: error: "), err
  for fragment in fragments:
    assert fragment in err, err


def test_missing_run_dir(tmp_path, capsys):
  assert main(["plot", str(tmp_path / "nope")]) == 2
  assert_one_line_error(capsys, str(tmp_path / "nope"), "does not exist")


def test_run_dir_without_metrics_csv(tmp_path, capsys):
  (tmp_path / "empty").mkdir()
  assert main(["plot", str(tmp_path / "empty")]) == 2
  assert_one_line_error(capsys, str(tmp_path / "empty" / "metrics.csv"), "not found")


def test_csv_without_round_column(tmp_path, capsys):
  run = write_run(tmp_path / "run", [{"step": 1, "loss": 0.5}])
  assert main(["plot", str(run)]) == 2
  assert_one_line_error(capsys, str(run / "metrics.csv"), "no 'round' column", "'step'")


def test_csv_without_loss_or_accuracy(tmp_path, capsys):
  run = write_run(tmp_path / "run", [{"round": 1, "client_work/train/num_examples": 5}])
  assert main(["plot", str(run)]) == 2
  assert_one_line_error(capsys, str(run / "metrics.csv"), "no loss or accuracy column")


def test_csv_with_a_cell_that_is_not_a_number(tmp_path, capsys):
  run = write_run(tmp_path / "run", [{"round": 1, "loss": 0.5}, {"round": 2, "loss": "oops"}])
  assert main(["plot", str(run)]) == 2
  assert_one_line_error(capsys, "line 3", "'loss'", "'oops'", "expected a number")


def test_unknown_output_suffix(tmp_path, capsys):
  rows, columns = tff_rows(rounds=2)
  run = write_run(tmp_path / "run", rows, columns)
  assert main(["plot", str(run), "-o", str(tmp_path / "out.jpeg")]) == 2
  assert_one_line_error(capsys, "out.jpeg", ".png, .pdf, .svg")


def test_missing_matplotlib_says_what_to_install(tmp_path, monkeypatch, capsys):
  rows, columns = tff_rows(rounds=2)
  run = write_run(tmp_path / "run", rows, columns)
  loaded = [m for m in sys.modules if m.startswith("matplotlib.")]
  for name in ["matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg", *loaded]:
    monkeypatch.setitem(sys.modules, name, None)
  assert main(["plot", str(run)]) == 2
  assert_one_line_error(capsys, "pip install 'federax[plot]'")


def test_no_run_dir_is_a_usage_error(capsys):
  with pytest.raises(SystemExit) as exit_info:
    main(["plot"])
  assert exit_info.value.code == 2
  assert "federax plot: error:" in capsys.readouterr().err
