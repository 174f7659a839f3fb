# ADE20K, ViT-L at patch 1x1 (262,144 tokens per 512x512 crop) + linear head, trained with FSDP
# (configs/_base_/fsdp.py) and activation checkpointing. Same recipe as
# configs/ade20k/vit_b_p1_linear.py (paper's 160k AdamW bf16 schedule, layer decay 0.9, total
# batch 16), with the large arch: 24 blocks, width 1024, 16 heads.
#   tools/dist_train.sh configs/fsdp/vit_l_p1_linear_fsdp.py 8
# Untested here (no GPUs); see docs/robustness.md for the memory estimate and caveats.
_base_ = ['../ade20k/vit_b_p1_linear.py', '../_base_/fsdp.py']
model = dict(
    backbone=dict(arch='large', with_cp=True),
    decode_head=dict(in_channels=1024))
train_dataloader = dict(batch_size=2)  # per GPU: 8 GPUs x 2 = 16; on 16 GPUs use 1
