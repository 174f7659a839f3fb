# FSDP (fully sharded data parallel) through mmengine's FlexibleRunner: add this file to a
# config's _base_ list and launch as usual with torchrun (tools/dist_train.sh CONFIG NGPUS).
# What it shards: parameters, gradients and AdamW state (16 bytes per parameter in fp32 + AdamW)
# across the GPUs; activations are NOT sharded (each GPU still holds its own samples'
# activations), so keep the backbone's with_cp=True for long token sequences.
# - one FSDP unit per backbone block (mmpatch/engine/fsdp_wrap_policy.py);
# - state_dict_cfg='full': rank 0 gathers and saves one ordinary checkpoint (same keys as a DDP
#   run), so tools/test.py, --resume and AtomicCheckpointHook's files work as without FSDP;
# - the config's optim_wrapper is kept: mmengine switches AmpOptimWrapper to FSDP's sharded
#   grad scaler (use_fsdp) and builds the optimizer after wrapping (use_orig_params=True, so
#   LayerDecayOptimWrapperConstructor's per-parameter groups stay possible).
# Not run in this repository's CI (no GPUs there): see docs/robustness.md.
runner_type = 'FlexibleRunner'
strategy = dict(
    type='FSDPStrategy',
    model_wrapper=dict(
        type='MMFullyShardedDataParallel',
        use_orig_params=True,
        auto_wrap_policy=dict(type='patch_block_wrap_policy')),
    state_dict_cfg='full')
