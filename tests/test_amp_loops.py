"""AmpValLoop / AmpTestLoop: the model's val/test step runs under autocast in the chosen dtype."""
import pytest
import torch
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.runner import Runner

import mmpatch  # noqa: F401  (registers the loops)
from mmpatch.engine.amp_loops import autocast_dtype


class RecordingModel(BaseModel):
    """Records the autocast state its val/test step runs in."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 2)
        self.seen = []

    def forward(self, inputs, mode='predict'):
        out = self.linear(inputs)
        self.seen.append((torch.is_autocast_cpu_enabled(), out.dtype))
        return [dict(pred=o) for o in out]


class CountMetric(BaseMetric):

    def process(self, data_batch, data_samples):
        self.results.extend(data_samples)

    def compute_metrics(self, results):
        return dict(count=len(results))


def run_loop(tmp_path, loop_type, **loop_kwargs):
    dataset = [dict(inputs=torch.ones(2)) for _ in range(4)]
    loader = dict(dataset=dataset, sampler=dict(type='DefaultSampler', shuffle=False),
                  batch_size=2, collate_fn=dict(type='default_collate'))
    model = RecordingModel()
    stage = 'val' if 'Val' in loop_type else 'test'
    runner = Runner(model=model, work_dir=str(tmp_path), default_scope='mmengine',
                    **{f'{stage}_dataloader': loader, f'{stage}_evaluator': [CountMetric()],
                       f'{stage}_cfg': dict(type=loop_type, **loop_kwargs)})
    metrics = runner.val() if stage == 'val' else runner.test()
    return model.seen, metrics


@pytest.mark.parametrize('loop_type', ['AmpValLoop', 'AmpTestLoop'])
def test_amp_loop_runs_the_step_in_bf16(tmp_path, loop_type):
    seen, metrics = run_loop(tmp_path, loop_type, dtype='bfloat16')
    assert metrics['count'] == 4
    assert seen == [(True, torch.bfloat16)] * 2


def test_plain_loop_stays_fp32(tmp_path):
    seen, _ = run_loop(tmp_path, 'TestLoop')
    assert seen == [(False, torch.float32)] * 2


def test_bad_dtype_is_named():
    with pytest.raises(ValueError, match="got 'fp32'"):
        autocast_dtype('fp32')
