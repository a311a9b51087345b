"""Reading TensorBoard event files as TensorBoard shows them (for tests)."""

import collections
import pathlib
import struct


def events(logdir: pathlib.Path) -> list:
  """Every Event proto in `logdir`, file by file in name order (TensorBoard's reading order)."""
  from tensorboardX.proto import event_pb2
  found = []
  for path in sorted(logdir.glob("events.out.tfevents.*")):
    data, offset = path.read_bytes(), 0
    while offset < len(data):  # TFRecord: length, its crc, the record, its crc.
      (length,) = struct.unpack("<Q", data[offset:offset + 8])
      found.append(event_pb2.Event.FromString(data[offset + 12:offset + 12 + length]))
      offset += 12 + length + 4
  return found


def scalars(logdir: pathlib.Path) -> dict:
  """Tag -> [(step, value)] as TensorBoard shows them: a SessionLog START at step s purges the
  events of steps >= s read before it (tensorboard's EventAccumulator, purge_orphaned_data)."""
  from tensorboardX.proto import event_pb2
  shown = collections.defaultdict(list)
  for event in events(logdir):
    if event.HasField("session_log") and event.session_log.status == event_pb2.SessionLog.START:
      for tag in shown:
        shown[tag] = [(s, v) for s, v in shown[tag] if s < event.step]
    for value in event.summary.value:
      if value.HasField("simple_value"):
        shown[value.tag].append((event.step, value.simple_value))
  return dict(shown)
