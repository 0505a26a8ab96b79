"""Projection heads: shapes, BatchNorm placement, in_dim injection."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from contrastive.components import heads
from contrastive.errors import InvalidArgumentsError
from contrastive.registry import Registries


@pytest.fixture(scope="module")
def regs():
    registries = Registries()
    heads.contrastive_register(registries)
    return registries


def _x(batch=4, dim=16):
    torch.manual_seed(0)
    return torch.randn(batch, dim)


@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_mlp_shapes(regs, num_layers):
    head = regs.heads.build("mlp", in_dim=16, hidden_dim=32, out_dim=8, num_layers=num_layers)
    assert head(_x()).shape == (4, 8)
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == num_layers
    assert head.out_dim == 8 and head.in_dim == 16


def test_mlp_v1_layout(regs):
    head = regs.heads.build("mlp", in_dim=16, hidden_dim=32, out_dim=8)
    kinds = [type(m) for m in head.layers]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert head.layers[0].bias is None  # followed by BN
    assert head.layers[3].bias is not None


def test_mlp_v2_layout_and_last_bn(regs):
    head = regs.heads.build("mlp", in_dim=16, hidden_dim=32, out_dim=8, num_layers=3, last_batch_norm=True)
    kinds = [type(m) for m in head.layers]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU] * 2 + [nn.Linear, nn.BatchNorm1d]
    assert all(m.bias is None for m in head.layers if isinstance(m, nn.Linear))


def test_mlp_without_batch_norm(regs):
    head = regs.heads.build("mlp", in_dim=16, hidden_dim=32, out_dim=8, batch_norm=False)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in head.modules())
    assert all(m.bias is not None for m in head.modules() if isinstance(m, nn.Linear))


def test_in_dim_is_injected(regs):
    regs.heads.check_args("mlp", {"hidden_dim": 32}, injected=["in_dim"])
    with pytest.raises(InvalidArgumentsError, match="in_dim"):
        regs.heads.check_args("mlp", {"hidden_dim": 32})


def test_identity_and_linear(regs):
    identity = regs.heads.build("identity", in_dim=16)
    x = _x()
    assert identity(x) is x and identity.out_dim == 16
    linear = regs.heads.build("linear", in_dim=16, out_dim=5)
    assert linear(x).shape == (4, 5) and linear.out_dim == 5


def test_bad_values(regs):
    with pytest.raises(InvalidArgumentsError, match=r"mlp.*num_layers"):
        regs.heads.build("mlp", in_dim=16, num_layers=0)
    with pytest.raises(InvalidArgumentsError, match="hidden_dim"):
        regs.heads.build("mlp", in_dim=16, hidden_dim=2.5)
