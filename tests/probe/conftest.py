"""Probe tests: one torch thread (the machine is shared; oversubscribed threads make tiny convolutions 20x slower)."""

from __future__ import annotations

import torch

torch.set_num_threads(1)
