"""What the test entry point's options change in the config (``--show``/``--show-dir``,
``--tta``, ``--out``) and where the test wrote its files."""
import copy
import os.path as osp

from mmengine.config import ConfigDict

from .errors import CliError


def enable_visualization(cfg, scope, show, show_dir, wait_time):
    """``--show`` / ``--show-dir``: the config's visualization hook draws (every image, for mmseg)."""
    hooks = cfg.get('default_hooks') or {}
    if 'visualization' not in hooks:
        hook = 'SegVisualizationHook' if scope == 'mmseg' else 'DetVisualizationHook'
        raise CliError(f"--show/--show-dir need default_hooks.visualization in the config, "
                       f"e.g. visualization=dict(type='{hook}')")
    hook = hooks['visualization']
    hook['draw'] = True
    if show:
        hook['show'] = True
        hook['wait_time'] = wait_time
    if scope == 'mmseg':
        hook.setdefault('interval', 1)  # SegVisualizationHook's default draws every 50th image only
        # it also reads runner.iter, which builds the train loop: build that on the test data,
        # so testing needs no training set
        if cfg.get('train_cfg') and cfg.get('test_dataloader'):
            cfg.train_dataloader = copy.deepcopy(cfg.test_dataloader)
        if show_dir:  # it writes through the visualizer's backends: <save_dir>/vis_data/vis_image/
            cfg.visualizer['save_dir'] = show_dir if osp.isabs(show_dir) else osp.join(cfg.work_dir, show_dir)
    elif show_dir:  # DetVisualizationHook puts a relative folder under <work_dir>/<timestamp>/
        hook['test_out_dir'] = show_dir


def enable_tta(cfg, scope):
    """``--tta``: the config's ``tta_model`` wraps the model, ``tta_pipeline`` feeds the test set."""
    missing = [k for k in ('tta_model', 'tta_pipeline') if k not in cfg]
    if missing:
        example = "dict(type='SegTTAModel')" if scope == 'mmseg' else \
            "dict(type='DetTTAModel', tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))"
        raise CliError(f'--tta needs {" and ".join(missing)} in the config (tta_model = {example}; '
                       "tta_pipeline: see the dataset base's tta_pipeline)")
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline


def set_seg_out(cfg, out):
    """``--out`` (mmseg): the evaluator writes the label maps into the folder ``out``."""
    cfg.test_evaluator['output_dir'] = out
    cfg.test_evaluator['keep_results'] = True


def add_det_dump(runner, out):
    """``--out`` (mmdet): the raw predictions are dumped into the .pkl file ``out``."""
    from mmdet.evaluation import DumpDetResults
    runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=out))


def output_files(runner, scope, out, show_dir):
    """Where the test wrote its files, absolute paths: ``metrics`` (the metrics JSON), ``out``
    (``--out``) and ``show_dir`` (the painted predictions); a key is left out when there is no file."""
    files = {}
    metrics = osp.join(runner.log_dir, f'{runner.timestamp}.json')
    if osp.isfile(metrics):
        files['metrics'] = osp.abspath(metrics)
    if out is not None:
        files['out'] = osp.abspath(out)
    if show_dir:
        if scope == 'mmseg':
            backends = getattr(runner.visualizer, '_vis_backends', {})
            folder = (osp.join(backends['LocalVisBackend']._save_dir, 'vis_image')
                      if 'LocalVisBackend' in backends else None)
        else:
            folder = next((h.test_out_dir for h in runner.hooks if hasattr(h, 'test_out_dir')), None)
        if folder:
            files['show_dir'] = osp.abspath(folder)
    return files


def output_lines(files, scope):
    """The lines test.py prints about ``output_files``."""
    what = dict(metrics='metrics', show_dir='--show-dir painted predictions',
                out='--out ' + ('label maps (PNG; class index + 1 with reduce_zero_label)'
                                if scope == 'mmseg' else 'raw predictions (pickle)'))
    return [f'{what[key]}: {files[key]}' for key in ('metrics', 'out', 'show_dir') if key in files]
