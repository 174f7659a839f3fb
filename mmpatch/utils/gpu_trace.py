"""Where a training step makes the GPU wait: the host's synchronising calls, and the GPU's idle
gaps in a profiler trace with what the host was running when each began."""
import json
import traceback
import warnings
from collections import Counter

import torch

GPU_CATEGORIES = ('kernel', 'gpu_memcpy', 'gpu_memset')


def sync_points(step, steps=1):
    """Run ``step()`` ``steps`` times with PyTorch's sync debug mode on ('warn'); each call that
    made the host wait for the GPU (``.item()``, pageable copies, ``nonzero``, ...) as
    ``(message, stack)``, the stack as formatted frames of the caller (innermost last)."""
    found = []

    def record(message, category, filename, lineno, file=None, line=None):
        if 'synchronizing' in str(message):
            stack = traceback.format_stack()[:-2]  # drop this hook and warnings' caller
            found.append((str(message).splitlines()[0], ''.join(stack)))
    before = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings():
        warnings.simplefilter('always')
        warnings.showwarning = record
        torch.cuda.set_sync_debug_mode('warn')
        try:
            for _ in range(steps):
                step()
        finally:
            torch.cuda.set_sync_debug_mode(before)
    return found


def gpu_gaps(events, min_us=50.0):
    """The GPU's idle gaps of at least ``min_us`` in a Chrome trace's ``events`` (PyTorch
    profiler export), longest first: ``dict(start_us, gap_us, host, next_gpu_op)``, ``host``
    the innermost Python frames (up to 4, innermost last) open in the main thread (the one with
    the most Python events) when the gap began, and the total idle time. Time between GPU
    operations shorter than ``min_us`` is not counted."""
    gpu = sorted((e for e in events if e.get('ph') == 'X' and e.get('cat') in GPU_CATEGORIES),
                 key=lambda e: e['ts'])
    python = [e for e in events if e.get('ph') == 'X' and e.get('cat') == 'python_function']
    if python:
        main = Counter(e.get('tid') for e in python).most_common(1)[0][0]
        python = [e for e in python if e.get('tid') == main]
    gaps, end = [], None
    for op in gpu:
        if end is not None and op['ts'] - end >= min_us:
            gaps.append(dict(start_us=end, gap_us=op['ts'] - end, host=_open_frames(python, end),
                             next_gpu_op=op['name'][:80]))
        end = op['ts'] + op['dur'] if end is None else max(end, op['ts'] + op['dur'])
    origin = gpu[0]['ts'] if gpu else 0
    for gap in gaps:
        gap['start_us'] -= origin
    return sorted(gaps, key=lambda g: -g['gap_us']), sum(g['gap_us'] for g in gaps)


def _open_frames(python, at_us, depth=4):
    """Names of the Python frames open at ``at_us`` (outermost first), the last ``depth``."""
    open_ = sorted((e for e in python if e['ts'] <= at_us <= e['ts'] + e['dur']),
                   key=lambda e: (e['ts'], -e['dur']))
    return [e['name'][:100] for e in open_][-depth:]


def trace_gaps(step, path, steps=3, min_us=50.0):
    """Profile ``steps`` calls of ``step()`` (CPU, CUDA, Python stacks), export the Chrome
    trace to ``path`` and return ``gpu_gaps`` of it."""
    from torch.profiler import ProfilerActivity, profile
    step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], with_stack=True) as prof:
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
    prof.export_chrome_trace(path)
    with open(path) as f:
        trace = json.load(f)
    return gpu_gaps(trace['traceEvents'] if isinstance(trace, dict) else trace, min_us)
