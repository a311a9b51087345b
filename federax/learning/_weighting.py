"""`ClientWeighting`: how much each client's update counts in the aggregate (TFF's enum)."""

import enum


class ClientWeighting(enum.Enum):
  """`EXAMPLES`: weight by the number of examples trained on; `UNIFORM`: every client 1."""

  EXAMPLES = 1
  UNIFORM = 2
