"""Test (and evaluate) a segmentor (``default_scope='mmseg'``) or a detector (``'mmdet'``).

``test(config, checkpoint, ...)`` is the function (the sweep calls it per cell); ``main`` its
command line, as ``tools/test.py`` and ``python -m mmpatch.apis.test`` run it. The config's
scope picks the ``--out`` format (mmseg: a folder of PNG label maps; mmdet: a .pkl file). Before
the Runner is built the config, its options, the patch sizes, the data paths and the checkpoint
file are checked; after, the classes and whether the checkpoint fits the model.
"""
import argparse

from mmengine.dist import is_main_process

from .args import add_common_args, parse
from .checks import (check_checkpoint_fits, check_data_paths, check_num_classes, check_patch_sizes,
                     read_checkpoint)
from .config import load_config, set_work_dir
from .errors import CliError, run
from .runner import build_runner, quiet_warnings
from .test_options import (add_det_dump, enable_tta, enable_visualization, output_files, output_lines,
                           set_seg_out)


def test(config, checkpoint, work_dir=None, cfg_options=None, out=None, show=False, show_dir=None,
         wait_time=2, tta=False, launcher='none', verbose=True, console=True):
    """Test ``checkpoint`` on ``config``'s test set (``config``: a path, or an mmengine ``Config``,
    which is copied); the other arguments are ``tools/test.py``'s options (``cfg_options``,
    ``verbose``, ``console``: as ``mmpatch.apis.train.train`` takes them).

    Returns:
        dict: ``metrics`` (the evaluator's, as mmengine returns them), ``files``: the absolute
        paths the test wrote, ``metrics`` (JSON), ``out``, ``show_dir`` (those that exist), and
        ``scope``: the config's default_scope.
    """
    with quiet_warnings(verbose):
        cfg = load_config(config, cfg_options, launcher)
        scope = cfg.default_scope
        set_work_dir(cfg, work_dir, config)
        state_dict = read_checkpoint(checkpoint, 'test.py CHECKPOINT')
        cfg.load_from = checkpoint
        if show or show_dir:
            enable_visualization(cfg, scope, show, show_dir, wait_time)
        if tta:
            enable_tta(cfg, scope)
        if out is not None:
            if scope == 'mmseg':
                set_seg_out(cfg, out)
            elif not out.endswith(('.pkl', '.pickle')):
                raise CliError(f'--out for detection must be a .pkl file, got {out}')
        check_patch_sizes(cfg, scope)
        check_data_paths(cfg, ['test_dataloader'], ['test_evaluator'], scope)
        runner = build_runner(cfg, scope, verbose, console)
        check_num_classes(runner, 'test_loop')
        check_checkpoint_fits(runner, checkpoint, state_dict)
        del state_dict  # the runner loads the file itself
        if out is not None and scope == 'mmdet':
            add_det_dump(runner, out)
        metrics = runner.test()
    return dict(metrics=metrics, files=output_files(runner, scope, out, show_dir), scope=scope)


def parser():
    p = argparse.ArgumentParser(prog='test.py', description='Test (and evaluate) a segmentor or '
                                "detector (the config's default_scope: mmseg or mmdet)")
    p.add_argument('config', help='test config file path')
    p.add_argument('checkpoint', help='checkpoint file')
    p.add_argument('--out', help='mmseg: folder for the predicted label maps, one PNG per image '
                   'named as the image; a pixel holds its class index + 1 for datasets with '
                   'reduce_zero_label (ADE20K, the toy set: the annotation files\' convention, 0 = '
                   'unlabelled), else the class index. mmdet: .pkl file for the raw predictions '
                   '(offline evaluation). A relative path is relative to the current folder, '
                   'as in mmseg/mmdet; the absolute path is printed at the end')
    p.add_argument('--show', action='store_true', help='show predictions in a window')
    p.add_argument('--show-dir', help='save painted predictions; a relative folder goes under '
                   '<work_dir>/ (mmseg: <show_dir>/vis_data/vis_image/) or <work_dir>/<timestamp>/ (mmdet)')
    p.add_argument('--wait-time', type=float, default=2, help='seconds each shown image stays')
    p.add_argument('--tta', action='store_true', help="test-time augmentation (the config's "
                   'tta_model and tta_pipeline)')
    add_common_args(p)
    return p


def main(argv=None):
    """``test`` on the command line ``argv`` (``sys.argv[1:]`` by default), then the files it
    wrote, one line each (``test.py: metrics: PATH``); errors propagate (``errors.run``)."""
    args = parse(parser(), argv)
    result = test(args.config, args.checkpoint, work_dir=args.work_dir, cfg_options=args.cfg_options,
                  out=args.out, show=args.show, show_dir=args.show_dir, wait_time=args.wait_time,
                  tta=args.tta, launcher=args.launcher, verbose=args.verbose)
    if is_main_process():
        for line in output_lines(result['files'], result['scope']):
            print(f'test.py: {line}', flush=True)


if __name__ == '__main__':
    run(main, 'test.py')
