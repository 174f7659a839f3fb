"""mmpatch's DropPath: timm's stochastic depth, with one compiled graph for every rate."""
import pytest
import torch

from mmpatch.models.backbones.patch_vit import PatchViT
from mmpatch.models.backbones.plain_backbone import call_block
from mmpatch.models.layers import DropPath


def test_drops_whole_samples_and_rescales_the_kept_ones():
    torch.manual_seed(0)
    layer = DropPath(0.25).train()
    x = torch.ones(4000, 3, 5)
    out = layer(x)
    per_sample = out.flatten(1)
    kept = per_sample[:, 0] != 0
    assert torch.all(per_sample[kept] == 1 / 0.75) and torch.all(per_sample[~kept] == 0)
    assert abs((~kept).float().mean().item() - 0.25) < 0.03
    assert torch.equal(layer.eval()(x), x)  # inference: identity
    assert layer.state_dict() == {}  # as timm's: nothing to save or load


def test_rate_must_be_a_probability_below_one():
    with pytest.raises(ValueError, match=r'drop_prob must be in \[0, 1\), got 1.0'):
        DropPath(1.0)


def test_blocks_with_different_rates_share_one_compiled_graph():
    # timm's float rate made dynamo compile one graph per block (and run blocks past its
    # recompile limit eagerly); a tensor rate is an input of one graph
    from torch._dynamo.testing import CompileCounter
    torch._dynamo.reset()
    counter = CompileCounter()
    call = torch.compile(call_block, backend=counter)
    model = PatchViT(arch=dict(embed_dims=16, num_layers=6, num_heads=2), patch_size=4,
                     img_size=16, drop_path_rate=0.3).train()
    rates = [float(block.drop_path.drop_prob) for block in model.blocks[1:]]
    assert len(set(rates)) == 5
    x = torch.randn(2, 17, 16, requires_grad=True)  # as the patch embedding's output
    for block in model.blocks[1:]:
        x = call(block, x)
    assert counter.frame_count == 1
