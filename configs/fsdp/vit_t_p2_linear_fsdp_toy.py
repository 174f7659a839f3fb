# The FSDP option on a toy cell: configs/toy/vit_t_p2_linear.py (toy ViT, p2, linear head, toy
# seg set) trained through FlexibleRunner + FSDPStrategy (configs/_base_/fsdp.py). It needs
# CUDA and >= 2 GPUs (FSDP moves the model to the GPU), e.g.
#   tools/dist_train.sh configs/fsdp/vit_t_p2_linear_fsdp_toy.py 2
# Run on 2 GPUs by tools/analysis/gpu_run.sh scale.
_base_ = ['../toy/vit_t_p2_linear.py', '../_base_/fsdp.py']
