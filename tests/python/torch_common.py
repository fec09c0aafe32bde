"""Torch helpers shared by the torch test modules (import after
``pytest.importorskip("torch")``)."""

import torch
from torch import nn

from conftest import ALL_DTYPE_NAMES

#: every dtype name of the suite -> its torch dtype (the names are torch's own)
TORCH_DTYPES = {name: getattr(torch, name) for name in ALL_DTYPE_NAMES}


class Tied(nn.Module):
    """An embedding tied to the output head (like most language models)."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 16)
        self.norm = nn.LayerNorm(16)
        self.head = nn.Linear(16, 100, bias=False)
        self.head.weight = self.emb.weight
