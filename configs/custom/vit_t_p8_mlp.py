# configs/custom/vit_t_p8_mlp.py
_base_ = '../toy/vit_t_p8_linear.py'
custom_imports = dict(imports=['mmpatch', 'my_decoders'], allow_failed_imports=False)
model = dict(decode_head=dict(
    _delete_=True, type='TokenMLPHead', in_channels=64, channels=64, num_classes=8))
