"""Tests for the live progress displays and tables, with rich and with the plain fallback."""

import io
import logging
import re
import sys

import pytest

from federax.cli import progress as progress_lib
from federax.cli.progress import DownloadProgress, RoundProgress, format_bytes, print_table

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
METRICS = {"client_work/train/loss": 0.5, "client_work/train/sparse_categorical_accuracy": 0.75,
           "client_work/train/num_examples": 640.0}


class TTY(io.StringIO):
  """A StringIO that says it is a terminal."""

  def isatty(self):
    return True


def plain(text):
  return ANSI.sub("", text)


@pytest.fixture(params=["rich", "plain"])
def mode(request, monkeypatch):
  """Runs the test with rich, then as if rich were not installed."""
  if request.param == "rich":
    pytest.importorskip("rich")
  else:
    for name in ("rich", "rich.console", "rich.progress", "rich.table", "rich.text"):
      monkeypatch.setitem(sys.modules, name, None)
  return request.param


def test_rich_can_be_hidden(monkeypatch):
  for name in ("rich", "rich.console", "rich.progress", "rich.table", "rich.text"):
    monkeypatch.setitem(sys.modules, name, None)
  assert progress_lib.import_rich() is None


def test_round_progress_writes_nothing_when_not_a_terminal(mode):
  stream = io.StringIO()
  with RoundProgress(3, stream=stream) as progress:
    assert not progress.enabled
    for r in range(1, 4):
      progress.update(r, METRICS)
  assert stream.getvalue() == ""


def test_round_progress_shows_rounds_loss_accuracy_and_eta(mode):
  stream = TTY()
  with RoundProgress(5, stream=stream) as progress:
    assert progress.enabled
    for r in range(1, 4):
      progress.update(r, {**METRICS, "client_work/train/loss": 1.0 / r})
  out = plain(stream.getvalue())
  for r in (1, 2, 3):
    assert f"round {r}/5" in out
  assert "loss 0.3333 acc 0.75" in out and "eta" in out
  assert out.endswith("\n")  # The last state stays on screen; the next output starts afresh.


def test_round_progress_keeps_the_latest_evaluation(mode):
  stream = TTY()
  with RoundProgress(4, start_round=3, stream=stream) as progress:
    progress.update(3, {**METRICS, "evaluation/client_work/eval/current_round_metrics/loss": 0.9,
                        "evaluation/client_work/eval/total_rounds_metrics/loss": 7.0})
    progress.update(4, METRICS)
  out = plain(stream.getvalue())
  assert "round 4/4" in out and "eval loss 0.9" in out and "eval loss 7" not in out


def test_round_progress_shows_the_privacy_spent(mode):
  stream = TTY()
  with RoundProgress(2, stream=stream) as progress:
    progress.update(1, {**METRICS, "privacy": {"epsilon": 0.5123, "delta": 1e-5}})
    progress.update(2, {**METRICS, "privacy": {"epsilon": 0.6789, "delta": 1e-5}})
  assert "loss 0.5 acc 0.75 ε 0.6789" in plain(stream.getvalue())


def test_round_progress_accepts_nested_metrics_and_skips_arrays():
  stream = TTY()
  with RoundProgress(1, stream=stream) as progress:
    progress.update(1, {"client_work": {"train": {"loss": 0.25, "per_class": [1, 2]}}})
  assert "loss 0.25" in plain(stream.getvalue())


def test_forced_on_and_off():
  on, off = io.StringIO(), TTY()
  with RoundProgress(2, enabled=True, stream=on) as progress:
    progress.update(1, METRICS)
  with RoundProgress(2, enabled=False, stream=off) as progress:
    progress.update(1, METRICS)
  assert "round" in on.getvalue() and off.getvalue() == ""


def test_round_progress_rejects_a_start_past_the_end():
  with pytest.raises(ValueError, match=r"start_round <= total_rounds \+ 1; got start_round=7, "
                     "total_rounds=5"):
    RoundProgress(5, start_round=7)


def test_logs_and_prints_appear_above_the_bar(mode, monkeypatch):
  terminal = TTY()
  monkeypatch.setattr(sys, "stderr", terminal)
  handler = logging.StreamHandler(terminal)  # As basicConfig makes it: holding sys.stderr.
  handler.setFormatter(logging.Formatter("%(message)s"))
  logger = logging.getLogger("federax.test_progress")
  logger.addHandler(handler)
  logger.propagate = False
  try:
    with RoundProgress(3) as progress:  # Default stream: sys.stderr, the terminal.
      progress.update(1, METRICS)
      logger.warning("a log line")
      print("a printed line", file=sys.stderr)
      progress.update(2, METRICS)
    assert handler.stream is terminal and sys.stderr is terminal  # Both restored.
  finally:
    logger.removeHandler(handler)
  lines = [line.strip() for line in re.split(r"[\r\n]", plain(terminal.getvalue()))]
  assert "a log line" in lines and "a printed line" in lines  # Whole lines, not glued to the bar.
  assert "round 2/3" in plain(terminal.getvalue())


def test_download_progress_shows_bytes_and_closes_itself(mode):
  stream = TTY()
  progress = DownloadProgress("emnist: fed_emnist.tar.bz2", stream=stream)
  for done in (0, 400_000, 1_000_000):
    progress(done, 1_000_000)
  assert not progress.active  # Closed at 100% without a `with`.
  out = plain(stream.getvalue())
  assert "emnist: fed_emnist.tar.bz2" in out and "1.0/1.0 MB" in out


def test_download_progress_shows_braces_in_its_description(mode):
  stream = TTY()
  with DownloadProgress("data {x} [bold]", stream=stream) as progress:
    progress(5, 10)
  assert "data {x} [bold]" in plain(stream.getvalue())


def test_download_progress_with_unknown_total(mode):
  stream = TTY()
  with DownloadProgress("data", stream=stream) as progress:
    progress(0, None)
    progress(2_500, None)
    assert progress.active
  assert not progress.active and "data" in plain(stream.getvalue())


def test_download_progress_writes_nothing_when_not_a_terminal(mode):
  stream = io.StringIO()
  with DownloadProgress("data", stream=stream) as progress:
    progress(0, 10)
    progress(10, 10)
  assert stream.getvalue() == ""


def test_print_table_plain_is_aligned_and_prints_without_a_terminal(mode):
  stream = io.StringIO()
  print_table("Summary", ["metric", "value"], [("loss", 0.123456789), ("rounds", 10),
                                                ("plot", None)], stream=stream)
  assert stream.getvalue().splitlines() == [
      "Summary",
      "metric     value",
      "------  --------",
      "loss    0.123457",
      "rounds        10",
      "plot",
  ]


def test_print_table_uses_rich_on_a_terminal():
  pytest.importorskip("rich")
  stream = TTY()
  print_table("Summary", ["metric", "value"], [("[bold]loss", 0.5)], stream=stream)
  out = plain(stream.getvalue())
  assert "Summary" in out and "[bold]loss" in out and "0.5" in out and "─" in out


def test_print_table_rejects_a_short_row():
  with pytest.raises(ValueError, match=r"row 1 has 1 values, expected 2"):
    print_table("t", ["a", "b"], [(1, 2), (3,)], stream=io.StringIO())


def test_format_bytes():
  assert [format_bytes(n) for n in (None, 950, 12_345, 4_035_752, 2.5e9)] == [
      "?", "950 bytes", "12.3 kB", "4.0 MB", "2.5 GB"]
