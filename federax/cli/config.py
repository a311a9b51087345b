"""`federax train`'s configuration: defaults per task, a TOML file, then flags, validated.

Precedence, lowest first: the built-in defaults, the task's defaults (`TASK_DEFAULTS`), the
`--config` TOML file (keys as the flags' long names, `-` or `_`, at top level or all in a
`[train]` table), the flags given on the command line. The resolved configuration is written to
the run directory as `config.toml`, which `federax resume` reads back.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import tomllib
from collections.abc import Mapping
from typing import Any, Optional

from federax.cli._errors import CLIError
from federax.cli.algorithms import ALGORITHMS

TASKS = ("synthetic", "emnist_digits", "emnist", "shakespeare")
RUNTIMES = ("vectorized", "sequential", "ray")
DP_ACCOUNTANTS = ("rdp", "pld")
ADAPTIVE_CLIP = "adaptive"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything a training run depends on; `None` fields take the task's default."""

  task: str = "synthetic"
  algorithm: str = "fedavg"
  rounds: Optional[int] = None
  clients_per_round: Optional[int] = None
  epochs: Optional[int] = None
  batch_size: Optional[int] = None
  max_elements: Optional[int] = None
  client_lr: Optional[float] = None
  server_lr: Optional[float] = None
  server_momentum: float = 0.9
  proximal_strength: float = 0.01
  seed: int = 0
  runtime: str = "vectorized"
  ray_address: Optional[str] = None  # The Ray cluster of `runtime = "ray"` (None: local Ray).
  ray_workers: Optional[int] = None  # Its workers (None: the cluster's CPUs).
  # Its fault policy (`fx.runtime.ray`'s max_retries, min_clients_per_round and
  # straggler_timeout_s, in seconds; None: defaults).
  ray_max_retries: Optional[int] = None
  ray_min_clients_per_round: Optional[int] = None
  ray_straggler_timeout: Optional[float] = None
  data_dir: Optional[str] = None
  out: Optional[str] = None
  eval_every: Optional[int] = None
  eval_clients: Optional[int] = None
  centralized_eval: bool = False
  checkpoint_every: int = 10
  keep_checkpoints: int = 5
  # Differential privacy: on with a noise multiplier (then clip defaults to adaptive, the
  # accountant to RDP, delta to 1 / N^1.1 for N training clients).
  dp_noise_multiplier: Optional[float] = None
  dp_clip: Optional[Any] = None  # A positive number, or "adaptive".
  dp_delta: Optional[float] = None
  dp_target_epsilon: Optional[float] = None
  dp_accountant: Optional[str] = None

  @property
  def dp(self) -> bool:
    """Whether training is differentially private."""
    return self.dp_noise_multiplier is not None


# Per task: the hyperparameters of the literature's baselines, shortened to minutes on a CPU.
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    # FedProx's Synthetic(1,1) (Li et al., MLSys 2020): 10 of 30 devices, E=20, B=10, lr 0.01.
    "synthetic": dict(rounds=200, clients_per_round=10, epochs=20, batch_size=10,
                      client_lr=0.01, server_lr=1.0, eval_every=5, eval_clients=0),
    # TFF's image-classification tutorial: 10 writers, 5 epochs, batch 20, SGD 0.02 / 1.0.
    "emnist_digits": dict(rounds=20, clients_per_round=10, epochs=5, batch_size=20,
                          client_lr=0.02, server_lr=1.0, eval_every=5, eval_clients=50),
    # EMNIST-62 CR of Reddi et al. (ICLR 2021): 10 clients, E=1, B=20, client lr 10^-1.5.
    "emnist": dict(rounds=100, clients_per_round=10, epochs=1, batch_size=20,
                   client_lr=10 ** -1.5, server_lr=1.0, eval_every=10, eval_clients=50),
    # Shakespeare of Reddi et al.: 10 clients, E=1, B=4, client lr 1, server lr 1.
    "shakespeare": dict(rounds=100, clients_per_round=10, epochs=1, batch_size=4,
                        client_lr=1.0, server_lr=1.0, eval_every=10, eval_clients=20),
}

FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
INT_FIELDS = ("rounds", "clients_per_round", "epochs", "batch_size", "max_elements", "seed",
              "eval_every", "eval_clients", "checkpoint_every", "keep_checkpoints", "ray_workers",
              "ray_max_retries", "ray_min_clients_per_round")
FLOAT_FIELDS = ("client_lr", "server_lr", "server_momentum", "proximal_strength",
                "dp_noise_multiplier", "dp_delta", "dp_target_epsilon", "ray_straggler_timeout")
STR_FIELDS = ("task", "algorithm", "runtime", "data_dir", "out", "dp_accountant",
              "ray_address")
BOOL_FIELDS = ("centralized_eval",)
CLIP_FIELDS = ("dp_clip",)  # A number or "adaptive": from a flag, text either way.
DP_FIELDS = tuple(name for name in FIELDS if name.startswith("dp_"))
RAY_FIELDS = tuple(name for name in FIELDS if name.startswith("ray_"))
# Algorithms whose aggregation is weighted by the clients' example counts, always.
WEIGHTED_ONLY = ("fedsgd",)


def _check_type(name: str, value: Any, source: str) -> Any:
  if name in INT_FIELDS and not (isinstance(value, int) and not isinstance(value, bool)):
    raise CLIError(f"{source}: {name} expects an integer, got {value!r}")
  if name in FLOAT_FIELDS:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      raise CLIError(f"{source}: {name} expects a number, got {value!r}")
    value = float(value)
  if name in STR_FIELDS and not isinstance(value, str):
    raise CLIError(f"{source}: {name} expects a string, got {value!r}")
  if name in BOOL_FIELDS and not isinstance(value, bool):
    raise CLIError(f"{source}: {name} expects true or false, got {value!r}")
  if name in CLIP_FIELDS:
    value = parse_clip(value, source)
  return value


def parse_clip(value: Any, source: str) -> Any:
  """`dp_clip` as a float, or "adaptive"."""
  if value == ADAPTIVE_CLIP:
    return value
  if isinstance(value, str):
    try:
      value = float(value)
    except ValueError:
      pass
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    raise CLIError(f"{source}: dp_clip expects a positive number or {ADAPTIVE_CLIP!r}, "
                   f"got {value!r}")
  return float(value)


def read_toml(path: str | os.PathLike) -> dict[str, Any]:
  """The settings in a TOML config file, keys normalized to field names."""
  path = pathlib.Path(path)
  try:
    with open(path, "rb") as f:
      data = tomllib.load(f)
  except FileNotFoundError:
    raise CLIError(f"config file {path} does not exist") from None
  except IsADirectoryError:
    raise CLIError(f"config file {path} is a directory, expected a TOML file") from None
  except OSError as e:
    raise CLIError(f"cannot read config file {path}: {e.strerror or e}") from None
  except UnicodeDecodeError as e:  # tomllib decodes the bytes first: binary data lands here.
    raise CLIError(f"config file {path} is not valid TOML: not UTF-8 text (byte {e.start} is "
                   f"{e.object[e.start:e.start + 1]!r})") from None
  except tomllib.TOMLDecodeError as e:
    raise CLIError(f"config file {path} is not valid TOML: {e}") from None
  if isinstance(data.get("train"), dict):
    beside = [key for key in data if key != "train"]
    if beside:  # Silently ignoring them would train with settings the user did not choose.
      raise CLIError(f"config file {path}: setting {beside[0]!r} is outside the [train] table; "
                     "put every setting inside [train], or use no table at all")
    data = data["train"]
  settings = {}
  for key, value in data.items():
    name = key.replace("-", "_")
    if name not in FIELDS:
      raise CLIError(f"config file {path}: unknown setting {key!r}; known: "
                     f"{', '.join(sorted(FIELDS))}")
    settings[name] = _check_type(name, value, f"config file {path}")
  return settings


def resolve(file_settings: Mapping[str, Any], flag_settings: Mapping[str, Any]) -> TrainConfig:
  """Defaults < task defaults < file < flags, then validated."""
  merged = {**file_settings, **{k: v for k, v in flag_settings.items() if v is not None}}
  if merged.get("dp_clip") is not None:
    merged["dp_clip"] = parse_clip(merged["dp_clip"], "--dp-clip")
  task = merged.get("task", TrainConfig.task)
  if task not in TASK_DEFAULTS:
    raise CLIError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
  config = TrainConfig(**{**TASK_DEFAULTS[task], **merged})
  validate(config)
  return config


def validate(config: TrainConfig) -> None:
  """Raises `CLIError` naming the first setting out of range."""
  if config.task not in TASKS:
    raise CLIError(f"unknown task {config.task!r}; expected one of {', '.join(TASKS)}")
  if config.algorithm not in ALGORITHMS:
    raise CLIError(f"unknown algorithm {config.algorithm!r}; expected one of "
                   f"{', '.join(ALGORITHMS)}")
  if config.runtime not in RUNTIMES:
    raise CLIError(f"unknown runtime {config.runtime!r}; expected one of {', '.join(RUNTIMES)}")
  if config.runtime != "ray":
    given = [name for name in RAY_FIELDS if getattr(config, name) is not None]
    if given:
      raise CLIError(f"{', '.join(given)} set without runtime ray: pass --runtime ray")
  if config.ray_workers is not None and config.ray_workers < 1:
    raise CLIError(f"ray_workers must be >= 1, got {config.ray_workers}")
  for name in ("ray_max_retries", "ray_min_clients_per_round"):
    if getattr(config, name) is not None and getattr(config, name) < 0:
      raise CLIError(f"{name} must be >= 0, got {getattr(config, name)}")
  if config.ray_straggler_timeout is not None and not config.ray_straggler_timeout > 0:
    raise CLIError(f"ray_straggler_timeout must be a positive number of seconds, got "
                   f"{config.ray_straggler_timeout}")
  for name in ("rounds", "clients_per_round", "epochs", "batch_size", "eval_every",
               "checkpoint_every"):
    if getattr(config, name) < 1:
      raise CLIError(f"{name} must be >= 1, got {getattr(config, name)}")
  if config.max_elements is not None and config.max_elements < 1:
    raise CLIError(f"max_elements must be >= 1, got {config.max_elements}")
  for name in ("seed", "eval_clients", "keep_checkpoints"):
    if getattr(config, name) < 0:
      raise CLIError(f"{name} must be >= 0, got {getattr(config, name)}")
  for name in ("client_lr", "server_lr"):
    value = getattr(config, name)
    if not (math.isfinite(value) and value > 0):
      raise CLIError(f"{name} must be a positive number, got {value}")
  if not 0 <= config.server_momentum < 1:
    raise CLIError(f"server_momentum must be in [0, 1), got {config.server_momentum}")
  if not (math.isfinite(config.proximal_strength) and config.proximal_strength >= 0):
    raise CLIError(f"proximal_strength must be >= 0, got {config.proximal_strength}")
  for name in ("out", "data_dir"):  # pathlib reads "" as ".": the working directory, unasked.
    value = getattr(config, name)
    if value is not None and not value.strip():
      raise CLIError(f"{name} must be a directory path, got {value!r}")
  if config.data_dir is not None and not pathlib.Path(config.data_dir).expanduser().is_dir():
    raise CLIError(f"data directory {config.data_dir} does not exist")
  _validate_dp(config)


def _validate_dp(config: TrainConfig) -> None:
  if not config.dp:
    given = [name for name in DP_FIELDS if getattr(config, name) is not None]
    if given:
      raise CLIError(f"{', '.join(given)} set without dp_noise_multiplier: differentially "
                     "private training starts with --dp-noise-multiplier Z")
    return
  if config.algorithm in WEIGHTED_ONLY:
    raise CLIError(f"--algorithm {config.algorithm} cannot train with differential privacy: "
                   "it averages the clients' updates weighted by their example counts, and "
                   "central DP needs an unweighted mean (one client's weight, hence its "
                   "influence, is unbounded, so no noise level covers it); use fedavg, "
                   "fedavgm, fedadam, fedyogi, fedadagrad or fedprox, which train unweighted "
                   "with DP")
  z = config.dp_noise_multiplier
  if not (math.isfinite(z) and z >= 0):
    raise CLIError(f"dp_noise_multiplier must be >= 0, got {z}")
  clip = parse_clip(config.dp_clip if config.dp_clip is not None else ADAPTIVE_CLIP, "dp_clip")
  if clip != ADAPTIVE_CLIP and not (math.isfinite(clip) and clip > 0):
    raise CLIError(f"dp_clip must be a positive number or {ADAPTIVE_CLIP!r}, got {clip}")
  if config.dp_delta is not None and not 0 < config.dp_delta < 1:
    raise CLIError(f"dp_delta must be in (0, 1), got {config.dp_delta}")
  epsilon = config.dp_target_epsilon
  if epsilon is not None and not (math.isfinite(epsilon) and epsilon > 0):
    raise CLIError(f"dp_target_epsilon must be a positive number, got {epsilon}")
  if config.dp_accountant is not None and config.dp_accountant not in DP_ACCOUNTANTS:
    raise CLIError(f"unknown dp_accountant {config.dp_accountant!r}; expected one of "
                   f"{', '.join(DP_ACCOUNTANTS)}")


def toml_string(text: str) -> str:
  r"""`text` as a TOML basic string: UTF-8 as is; quotes, backslashes and controls escaped.

  (A JSON string is not always TOML: JSON writes characters beyond the BMP as surrogate pairs,
  `"\ud83d\ude00"`, which TOML rejects.)

  Example:
    >>> print(toml_string('runs/\U0001F600 "a"\n'))
    "runs/😀 \"a\"\n"
    >>> tomllib.loads("out = " + toml_string('runs/\U0001F600'))["out"] == 'runs/\U0001F600'
    True
  """
  if any(0xD800 <= ord(c) <= 0xDFFF for c in text):  # Undecodable bytes of a file name.
    raise CLIError(f"{text!r} is not valid UTF-8 text; a run's settings must be (rename it)")
  return '"' + text.translate(_TOML_ESCAPES) + '"'


_TOML_ESCAPES = {**{c: f"\\u{c:04X}" for c in [*range(0x20), 0x7F]},
                 **{ord(c): "\\" + e for c, e in zip('"\\\b\t\n\f\r', '"\\btnfr')}}


def to_toml(config: TrainConfig) -> str:
  """`config` as TOML (unset fields left out), readable by `read_toml`."""
  lines = ["# Written by `federax train`; `federax resume` reads it back.", "[train]"]
  for name, value in dataclasses.asdict(config).items():
    if value is None:
      continue
    if isinstance(value, str):
      value = toml_string(value)
    elif isinstance(value, bool):
      value = "true" if value else "false"
    elif isinstance(value, float):
      value = repr(value)
    lines.append(f"{name} = {value}")
  return "\n".join(lines) + "\n"
