"""mmpatch's train and test entry points, as functions and as command lines.

    from mmpatch.apis.train import train
    from mmpatch.apis.test import test
    result = train('configs/toy/vit_t_p8_linear.py', work_dir='work_dirs/a', resume='auto')
    metrics = test('configs/toy/vit_t_p8_linear.py', result['checkpoint'])['metrics']

    python tools/train.py CONFIG ...     # or: python -m mmpatch.apis.train CONFIG ...
    python tools/test.py CONFIG CKPT ... # or: python -m mmpatch.apis.test CONFIG CKPT ...

- ``train.py`` / ``test.py``: the functions, their argument parsers and ``main``;
- ``config.py``: ``load_config``, the one config loader (config checks: ``config_checks.py``);
- ``checks.py``: data paths, patch sizes, classes, checkpoints, checked before training/testing;
- ``train_options.py`` / ``test_options.py``: what the options change in the config;
- ``runner.py``: the runner (the config's runner_type) with a quiet console;
- ``errors.py``: the one-line errors of the tools (``<tool>: error: ...; fix: ...``).
"""
