"""What PatchViT and PatchMamba share through plain_backbone: the arch lookup, out indices,
one DropPath and one meaning of ``final_norm``."""
import pytest
import torch

from mmpatch.models.backbones import patch_mamba, patch_vit
from mmpatch.models.backbones.plain_backbone import (ARCH_ALIASES, PlainBackbone,
                                                     normalize_out_indices, resolve_arch)
from mmpatch.models.layers.drop_path import DropPath

MICRO = {
    patch_vit.PatchViT: dict(embed_dims=32, num_layers=3, num_heads=2),
    patch_mamba.PatchMamba: dict(embed_dims=32, num_layers=3, d_state=8, headdim=16),
}
BACKBONES = list(MICRO)


def micro(cls, **kwargs):
    torch.manual_seed(0)
    return cls(**dict(dict(arch=MICRO[cls], patch_size=4, img_size=16), **kwargs))


def test_resolve_arch():
    table = {'tiny': dict(embed_dims=8, num_layers=2)}
    assert resolve_arch('T', table, dict(mlp_ratio=2.)) == dict(embed_dims=8, num_layers=2,
                                                                 mlp_ratio=2.)
    assert resolve_arch(dict(embed_dims=4, num_layers=1, mlp_ratio=3.), table,
                        dict(mlp_ratio=2.)) == dict(embed_dims=4, num_layers=1, mlp_ratio=3.)
    with pytest.raises(ValueError, match=r"unknown arch 'huge'; use one of \['tiny'\]"):
        resolve_arch('huge', table, {})
    with pytest.raises(ValueError, match=r"needs keys \['embed_dims', 'num_layers'\] "
                                         r"\(optional: \['mlp_ratio'\]\), got \['embed_dims'\]"):
        resolve_arch(dict(embed_dims=4), table, dict(mlp_ratio=2.))
    with pytest.raises(ValueError, match='needs keys'):
        resolve_arch(dict(embed_dims=4, num_layers=1, depth=2), table, {})
    with pytest.raises(TypeError, match='a name or a dict'):
        resolve_arch(3, table, {})


@pytest.mark.parametrize('module', [patch_vit, patch_mamba])
def test_each_backbone_keeps_its_table_and_shares_the_lookup(module):
    assert not hasattr(module, 'ARCH_ALIASES') and not hasattr(module, 'normalize_out_indices')
    for alias, name in ARCH_ALIASES.items():
        assert module.parse_arch(alias) == module.parse_arch(name)
        assert module.parse_arch(name)['embed_dims'] == module.ARCH_SETTINGS[name]['embed_dims']
    with pytest.raises(ValueError, match='unknown arch'):
        module.parse_arch('huge')


def test_vit_arch_keeps_its_own_checks():
    assert patch_vit.parse_arch(dict(embed_dims=8, num_layers=1, num_heads=2))['mlp_ratio'] == 4.
    with pytest.raises(ValueError, match='divisible'):
        patch_vit.parse_arch(dict(embed_dims=30, num_layers=1, num_heads=4))


def test_normalize_out_indices():
    assert normalize_out_indices(-1, 12) == (11,)
    assert normalize_out_indices([2, -1], 12) == (2, 11)
    for bad in ((), 12, (-13,), (1.0,)):
        with pytest.raises(ValueError, match='out_indices'):
            normalize_out_indices(bad, 12)


@pytest.mark.parametrize('cls', BACKBONES)
def test_one_drop_path(cls):
    model = micro(cls, drop_path_rate=0.2)
    drop_paths = [m for m in model.modules() if 'DropPath' in type(m).__name__]
    assert drop_paths and all(type(m) is DropPath for m in drop_paths)
    assert not any('drop' in k for k in model.state_dict())  # no checkpoint keys
    x = torch.randn(2, 3, 16, 16)
    reference = micro(cls, drop_path_rate=0.).eval()
    with torch.no_grad():  # identity at eval: the outputs of a model without drop path
        assert torch.equal(model.eval()(x)[0], reference(x)[0])


@pytest.mark.parametrize('cls', BACKBONES)
def test_final_norm_is_a_norm_after_the_last_block(cls):
    assert issubclass(cls, PlainBackbone)
    x = torch.randn(1, 3, 16, 16)
    normed = micro(cls, out_indices=(0, 2)).eval()
    plain = micro(cls, out_indices=(0, 2), final_norm=False).eval()
    norm = normed.norm if cls is patch_vit.PatchViT else normed.norm_f
    own = {k: v for k, v in normed.state_dict().items() if k in plain.state_dict()}
    plain.load_state_dict(own, strict=True)  # the same weights but the norm's
    with torch.no_grad():
        (a0, a2), (b0, b2) = normed(x), plain(x)
        tokens = norm(b2.flatten(2).transpose(1, 2))
    assert torch.equal(a0, b0)  # an earlier block: never normed
    assert torch.allclose(a2, tokens.transpose(1, 2).reshape(a2.shape), atol=1e-6)
    assert not torch.allclose(a2, b2)
    middle_last = micro(cls, out_indices=(1, 0)).eval()  # the last block is no out index
    middle_plain = micro(cls, out_indices=(1, 0), final_norm=False).eval()
    middle_plain.load_state_dict(own, strict=True)
    with torch.no_grad():
        for a, b in zip(middle_last(x), middle_plain(x)):
            assert torch.equal(a, b)
