"""Timing helpers shared by ``benchmark.py`` and ``check.py`` (speed, memory, ceilings).

Warm-up steps first (compilation, cuDNN plans, allocator growth), then each timed step
between CUDA events, and the median of the timed steps. Out-of-memory is a result ('OOM'),
not a crash.

Rows that compare models run each in a fresh process (``run_fresh_process``): a model
timed after another in one process inherits its compiled code, allocator, flags and
warm-up, and can run measurably slower than alone. The child prints its result as one
JSON line after ``RESULT_MARK`` (``print_result``); the parent never touches the device.
"""
import csv
import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time

import torch
import torch.nn.functional as F

OOM = 'OOM'
BENCHMARK = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         'benchmark.py')  # the entry point whose sub-commands the rows run
RESULT_MARK = 'FRESH_PROCESS_RESULT '
_ERROR_LINES = 12  # output lines of a failed child kept for its error message


def print_result(result):
    """Print a child's result (JSON-serialisable) as the line ``run_fresh_process`` looks for."""
    print(RESULT_MARK + json.dumps(result), flush=True)


def child_env():
    """The caller's environment, unbuffered, with this repository importable."""
    repo = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..'))
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    env['PYTHONPATH'] = os.pathsep.join(p for p in (repo, env.get('PYTHONPATH')) if p)
    return env


def run_fresh_process(script, argv, timeout=None):
    """Run ``python script *argv`` in a new interpreter and return the result it printed.

    The child's output (stdout and stderr) streams through to this process's stdout as it
    comes, so a cut run keeps its log. Returns the decoded ``print_result`` object, or
    ``dict(status='error: ...')`` when the child failed, printed no result or ran past
    ``timeout`` seconds (then it is killed).
    """
    proc = subprocess.Popen([sys.executable, script, *map(str, argv)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=child_env())
    killed = []
    timer = threading.Timer(timeout, lambda: killed.append(proc.kill())) if timeout else None
    if timer:
        timer.start()
    result, tail = None, []
    try:
        for line in proc.stdout:
            if line.startswith(RESULT_MARK):
                result = json.loads(line[len(RESULT_MARK):])
                continue
            sys.stdout.write(line)
            tail = (tail + [line.rstrip()])[-_ERROR_LINES:]
        proc.wait()
    finally:
        if timer:
            timer.cancel()
        if proc.poll() is None:  # interrupted here: the child must not run on
            proc.kill()
            proc.wait()
        sys.stdout.flush()
    if killed:
        return dict(status=f'error: killed after {timeout} s')
    if result is not None and proc.returncode == 0:
        return result
    last = next((t for t in reversed(tail) if t.strip()), '')
    return dict(status=f'error: exit code {proc.returncode}: {last[:150]}')


def fresh_rows(script, plans, timeout=None, on_row=None):
    """Each plan's row measured by ``python script *argv`` in a fresh process.

    ``plans``: ``(argv, fallback)`` pairs; the child prints ``dict(row=..., env=...)`` with
    ``print_result``. A child that failed gives ``dict(fallback, status=...)``. Returns the rows
    and the first value of each ``env`` key any child reported; ``on_row(rows)`` runs after
    every row (e.g. to write the table so far: a cut run keeps its rows).
    """
    rows, env = [], {}
    for argv, fallback in plans:
        result = run_fresh_process(script, argv, timeout=timeout)
        rows.append(result.get('row') or dict(fallback, status=result.get('status')))
        env.update({k: v for k, v in result.get('env', {}).items() if env.get(k) is None})
        print(rows[-1], flush=True)
        if on_row:
            on_row(rows)
    return rows, env


def check_device(device):
    """Raise where ``device`` is CUDA and this machine has none."""
    if torch.device(device).type == 'cuda' and not torch.cuda.is_available():
        raise RuntimeError('CUDA is not available; use --device cpu --tiny for a smoke test')


def device_name(device):
    device = torch.device(device)
    return torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'


class Timer:
    """Per-step wall time: CUDA events on the GPU, perf_counter on the CPU."""

    def __init__(self, device):
        self.cuda = torch.device(device).type == 'cuda'
        self.marks = []

    def mark(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def step_seconds(self):
        """Seconds between successive (start, end) mark pairs."""
        if self.cuda:
            torch.cuda.synchronize()
            pairs = zip(self.marks[::2], self.marks[1::2])
            return [start.elapsed_time(end) / 1e3 for start, end in pairs]
        return [end - start for start, end in zip(self.marks[::2], self.marks[1::2])]


def median_step_seconds(step, warmup, steps, device):
    """Run ``step()`` ``warmup`` times untimed, then ``steps`` times timed; median seconds."""
    if steps < 1 or warmup < 0:
        raise ValueError(f'need steps >= 1 and warmup >= 0, got {steps}, {warmup}')
    for _ in range(warmup):
        step()
    timer = Timer(device)
    for _ in range(steps):
        timer.mark()
        step()
        timer.mark()
    return statistics.median(timer.step_seconds())


def is_oom(err):
    """True for the allocator's OOM and for cuBLAS / cuDNN allocation failures."""
    if isinstance(err, torch.cuda.OutOfMemoryError):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and ('out of memory' in text or 'ALLOC_FAILED' in text)


def free_device_memory(device):
    """Collect garbage, drop cached blocks and reset the peak counter (CUDA; call between models)."""
    if torch.device(device).type == 'cuda':
        gc.collect()  # frees what an OOM traceback or a cycle still holds
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device):
    if torch.device(device).type != 'cuda':
        return None
    return torch.cuda.max_memory_allocated(device) / 2 ** 30


def matmul_tflops(device, n=8192, dtype=torch.bfloat16, warmup=3, steps=10):
    """Measured dense matmul rate (n x n x n, random operands), TFLOP/s: the linear ceiling."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    seconds = median_step_seconds(lambda: torch.mm(a, b), warmup, steps, device)
    return 2 * n ** 3 / seconds / 1e12


def attention_flops(batch, heads, tokens, head_dim, backward=True):
    """FLOPs of non-causal attention: 4 B H N^2 d forward, 2.5x that more backward."""
    forward = 4 * batch * heads * tokens ** 2 * head_dim
    return forward * 3.5 if backward else forward


def sdpa_step(context, batch, heads, tokens, head_dim, device, dtype, backward=True):
    """A closure running one SDPA call (and its backward) under ``context`` on random inputs."""
    shape = (batch, heads, tokens, head_dim)
    q, k, v = (torch.randn(shape, device=device, dtype=dtype, requires_grad=backward)
               for _ in range(3))
    grad = torch.randn(shape, device=device, dtype=dtype)

    def step():
        with context():
            out = F.scaled_dot_product_attention(q, k, v)
        if backward:
            torch.autograd.grad(out, (q, k, v), grad)
    return step


def relative_error(out, ref):
    """||out - ref|| / ||ref|| in float64."""
    out, ref = out.double(), ref.double()
    return ((out - ref).norm() / ref.norm()).item()


def write_csv(path, rows):
    """Rows (dicts) to CSV; columns are the union of keys in first-seen order."""
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def read_csv(path):
    """Rows of a CSV written by ``write_csv``, numbers and booleans parsed; [] if absent."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [{k: _parse(v) for k, v in r.items() if v != ''} for r in csv.DictReader(f)]


def _parse(value):
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return {'True': True, 'False': False}.get(value, value)



def markdown_table(rows, columns=None):
    """A Markdown table of ``rows`` (dicts); floats to 3 significant digits."""
    if not rows:
        return '(no rows)'
    columns = columns or list(dict.fromkeys(k for row in rows for k in row))

    def cell(value):
        if isinstance(value, float):
            return f'{value:.3g}' if abs(value) < 1e4 else f'{value:.0f}'
        return '' if value is None else str(value)
    lines = ['| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)]
    lines += ['| ' + ' | '.join(cell(row.get(k)) for k in columns) + ' |' for row in rows]
    return '\n'.join(lines)


def profile_steps(step, device, path, name, steps=3, rows=25):
    """torch.profiler over ``steps`` calls of ``step``: wall and GPU-busy ms per step, and the
    ops with the most self GPU time (on a GPU) and with the most self CPU time."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile
    cuda = device.type == 'cuda'
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    step()  # warm
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        if cuda:
            torch.cuda.synchronize()
        wall_ms = (time.perf_counter() - start) * 1e3 / steps
    events = prof.key_averages()
    # as the profiler's own 'Self CUDA time total': kernels and copies, not annotations
    gpu_ms = sum(e.self_device_time_total for e in events if e.device_type != DeviceType.CPU
                 and not getattr(e, 'is_user_annotation', False)) / 1e3 / steps
    text = [f'{steps} {name} steps under the profiler: wall {wall_ms:.1f} ms per step, '
            f'GPU busy {gpu_ms:.1f} ms per step (the rest the GPU waits for the host)']
    if cuda:
        text.append(kernel_classes_table(events, steps))
    for sort_by in (['self_cuda_time_total'] if cuda else []) + ['self_cpu_time_total']:
        text.append(f'sorted by {sort_by}\n' + events.table(sort_by=sort_by, row_limit=rows))
    text = '\n\n'.join(text)
    with open(path, 'w') as f:
        f.write(text + '\n')
    return text


# Kernel classes of a profile, first match wins (lower-case substrings of the kernel's name).
KERNEL_CLASSES = (
    ('attention', ('flash', 'fmha', 'attention', 'cudnn_attn', 'sdpa')),
    ('ssd scan (Triton)', ('_chunk_scan', '_chunk_state', '_state_passing', '_bmm_chunk',
                           '_chunk_cumsum', 'ssd')),
    ('gated rmsnorm (Triton)', ('_layer_norm_fwd', '_layer_norm_bwd', 'rmsnorm')),
    ('matmul', ('gemm', 'cutlass', 'xmma', 'nvjet', 'matmul', 'sm90', 'cublas')),
    ('conv', ('conv', 'cudnn')),
    ('fused by Inductor', ('triton_',)),
    ('optimizer', ('adam', 'foreach', 'multi_tensor')),
    ('copies', ('memcpy', 'memset', 'copy_', 'cat', 'flip', 'index')),
    ('eager elementwise / reductions', ('elementwise', 'vectorized', 'reduce', 'norm', 'silu',
                                        'gelu', 'softmax')),
)


def kernel_class(name):
    """The ``KERNEL_CLASSES`` class of a kernel name ('other' if none matches)."""
    lower = name.lower()
    return next((cls for cls, keys in KERNEL_CLASSES if any(k in lower for k in keys)), 'other')


def kernel_classes_table(events, steps):
    """GPU ms per step and kernel launches per step of each kernel class of a profile."""
    from torch.autograd import DeviceType
    totals = {}
    for e in events:
        if e.device_type == DeviceType.CPU or getattr(e, 'is_user_annotation', False):
            continue
        ms, count = totals.get(kernel_class(e.key), (0., 0))
        totals[kernel_class(e.key)] = (ms + e.self_device_time_total / 1e3 / steps,
                                       count + e.count / steps)
    rows = [dict(kernel_class=k, gpu_ms_per_step=round(ms, 2), launches_per_step=round(n))
            for k, (ms, n) in sorted(totals.items(), key=lambda kv: -kv[1][0])]
    return 'GPU time by kernel class\n' + markdown_table(rows)
