"""Speed and memory benchmarks of mmpatch's backbones, segmentors and detectors.

    python tools/analysis/benchmark.py SUB-COMMAND [options]   (SUB-COMMAND --help for its options)

Sub-commands:
  models         training step of the backbones (ViT-B ours / timm / mmseg, Adventurer-B) per
                 patch size, each row in a fresh process, with the matmul and SDPA ceilings;
                 writes models.csv, sdpa.csv, env.json, benchmark.{md,png}
  report         benchmark.{md,png} again from the CSVs of one or more ``models`` runs
  seg-iteration  an mmseg training iteration (stock, then the speed wing's pieces) against the
                 backbone-only step; writes seg_iteration.{csv,md}
  detection      a COCO detector's training iteration per patch size, from the real configs,
                 each patch size in a fresh process; writes detection.{md,json}
  cost           what every config costs to train (s/iter, peak memory, GPU-hours and days of
                 the full schedule on 8 GPUs), each config in a fresh process, the rows not
                 timed projected from FLOPs; writes cost.{csv,md}
  cost-report    cost.{csv,md} again from the cost.csv of one or more ``cost`` runs, merged
  row, kernels, detection-row, cost-row
                 what ``models``, ``detection`` and ``cost`` run in their fresh processes

On a GPU machine, from the repository root:
    python tools/analysis/benchmark.py models --anchor-repeat --out work_dirs/benchmark
    python tools/analysis/benchmark.py models --backbones PatchViT timm --patch-sizes 16 8 4
    python tools/analysis/benchmark.py seg-iteration --compile-mode reduce-overhead
    python tools/analysis/benchmark.py detection --backbone adventurer_b --patch-sizes 16 8 4
    python tools/analysis/benchmark.py cost --out results/cost/<device>_<date>_<commit>
Every sub-command takes ``--device cpu --tiny`` for a smoke test on a CPU.
"""
import sys

from perfkit import dispatch

# sub-command -> (module of perfkit, function); imported on use, so that a row's process
# imports only what its row needs
SUBCOMMANDS = {
    'models': ('models', 'main'),
    'report': ('models', 'report_main'),
    'row': ('models', 'row_main'),
    'kernels': ('models', 'kernels_main'),
    'seg-iteration': ('seg_iteration', 'main'),
    'detection': ('detection', 'main'),
    'detection-row': ('detection', 'row_main'),
    'cost': ('cost', 'main'),
    'cost-row': ('cost', 'row_main'),
    'cost-report': ('cost_report', 'main'),
}


def main(argv=None):
    return dispatch('benchmark.py', SUBCOMMANDS, __doc__, argv)


if __name__ == '__main__':
    main()
