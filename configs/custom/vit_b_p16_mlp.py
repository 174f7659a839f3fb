# configs/custom/vit_b_p16_mlp.py
_base_ = '../ade20k/vit_b_p16_linear.py'
custom_imports = dict(imports=['mmpatch', 'my_decoders'], allow_failed_imports=False)
model = dict(decode_head=dict(
    _delete_=True, type='TokenMLPHead', in_channels=768, channels=256, num_classes=150))
