"""Correctness checks of mmpatch's kernels, process state and configs, with their timings.

    python tools/analysis/check.py SUB-COMMAND [options]   (SUB-COMMAND --help for its options)

Sub-commands:
  mamba-kernels  mamba_ssm's kernels against mmpatch's PyTorch SSD (outputs and every
                 gradient), then PatchMamba's training step per patch size
  fused-ce       the fused resize + cross-entropy kernel against LinearHead's two other loss
                 paths: agreement and time
  global-state   whether the backbones leave PyTorch's process-wide settings as they found
                 them (exit code 1 if not)
  seg-configs    one training step and one prediction per segmentation config on synthetic
                 data: time and peak GPU memory, OOM as a result

Every sub-command takes ``--device cpu`` (and, but for seg-configs, ``--tiny``) for a smoke
test on a CPU.
"""
import sys

from perfkit import dispatch

# sub-command -> (module of perfkit, function), imported on use
SUBCOMMANDS = {
    'mamba-kernels': ('mamba_kernels', 'main'),
    'fused-ce': ('fused_ce', 'main'),
    'global-state': ('global_state', 'exit_code_main'),
    'seg-configs': ('seg_configs', 'main'),
}


def main(argv=None):
    return dispatch('check.py', SUBCOMMANDS, __doc__, argv)


if __name__ == '__main__':
    result = main()
    sys.exit(result if isinstance(result, int) else 0)
