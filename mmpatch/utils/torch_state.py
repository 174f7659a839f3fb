"""PyTorch's process-wide settings: read them, restore the SDPA ones, and diff two snapshots.

A backbone must leave these as it found them: a timm teacher, an mmseg head with attention,
or the next row of a benchmark in the same process would otherwise run under settings it never
asked for. ``torch_settings()`` reads everything a model could plausibly change (SDPA kernel
flags and priority, cuDNN / TF32 / matmul precision, determinism, dynamo / inductor /
functorch configuration, default dtype and device, grad / inference / autocast modes, thread
counts, active dispatch and function modes); ``settings_diff`` names what differs. None of
the reads initialises CUDA, so a parent process that only orchestrates may call them.
"""
import torch

# torch._C getter / setter suffixes of SDPA's per-kernel switches (absent ones skipped)
SDPA_FLAGS = ('flash', 'mem_efficient', 'math', 'cudnn', 'overrideable')


def _get(obj, name):
    """``obj.name`` or '<absent>' (older or newer torch)."""
    return getattr(obj, name, '<absent>')


def sdpa_state():
    """(priority order or None, {flag: enabled}) of SDPA's kernel selection, as torch keeps it."""
    get_order = getattr(torch._C, '_get_sdp_priority_order', None)  # torch >= 2.6
    flags = {name: getattr(torch._C, f'_get_{name}_sdp_enabled')() for name in SDPA_FLAGS
             if hasattr(torch._C, f'_get_{name}_sdp_enabled')}
    return (list(get_order()) if get_order else None), flags


def set_sdpa_state(order, flags):
    """Set SDPA's priority order (if this torch has one and ``order`` is given) and its flags.

    Used both to select kernels and to restore a ``sdpa_state()`` exactly: torch's own
    ``sdpa_kernel(..., set_priority=True)`` restores the priority of the kernels that were
    enabled on entry only, so a kernel disabled on entry comes back at the position the context
    gave it.
    """
    if order is not None and hasattr(torch._C, '_set_sdp_priority_order'):
        torch._C._set_sdp_priority_order([int(b) for b in order])
    for name, enabled in flags.items():
        getattr(torch._C, f'_set_sdp_use_{name}')(bool(enabled))


def _config(module_name):
    """A dynamo / inductor / functorch config as a flat dict (empty if the module is absent)."""
    import importlib
    try:
        config = importlib.import_module(module_name)
    except ImportError:
        return {}
    return {f'{module_name}.{k}': v for k, v in config.get_config_copy().items()}


def _backends():
    """cuDNN, cuBLAS / TF32 and precision switches (module flags: no CUDA initialisation)."""
    b = torch.backends
    state = {f'cudnn.{k}': _get(b.cudnn, k) for k in
             ('enabled', 'benchmark', 'benchmark_limit', 'deterministic', 'allow_tf32')}
    state.update({f'cuda.matmul.{k}': _get(b.cuda.matmul, k) for k in
                  ('allow_tf32', 'allow_fp16_reduced_precision_reduction',
                   'allow_bf16_reduced_precision_reduction', 'fp32_precision')})
    for name, obj in (('fp32_precision', b), ('cudnn.fp32_precision', b.cudnn),
                      ('cudnn.conv.fp32_precision', getattr(b.cudnn, 'conv', None)),
                      ('mkldnn.fp32_precision', b.mkldnn)):
        state[name] = _get(obj, 'fp32_precision')
    state['mkldnn.enabled'] = _get(b.mkldnn, 'enabled')
    state['opt_einsum.enabled'] = _get(getattr(b, 'opt_einsum', None), 'enabled')
    math_reduction = getattr(torch._C, '_get_math_sdp_allow_fp16_bf16_reduction', None)
    state['sdpa.math_fp16_bf16_reduction'] = math_reduction() if math_reduction else '<absent>'
    state['float32_matmul_precision'] = torch.get_float32_matmul_precision()
    blas = getattr(b.cuda, 'preferred_blas_library', None)
    state['cuda.preferred_blas_library'] = str(blas()) if blas else '<absent>'
    return state


def _modes():
    """Grad, inference, autocast, determinism, default dtype / device, threads, active modes."""
    state = dict(
        default_dtype=torch.get_default_dtype(), grad_enabled=torch.is_grad_enabled(),
        inference_mode=torch.is_inference_mode_enabled(),
        anomaly=torch.is_anomaly_enabled(),
        deterministic=torch.are_deterministic_algorithms_enabled(),
        deterministic_warn_only=torch.is_deterministic_algorithms_warn_only_enabled(),
        num_threads=torch.get_num_threads(), num_interop_threads=torch.get_num_interop_threads(),
        autocast_cache=torch.is_autocast_cache_enabled(),
        torch_function_modes=torch._C._len_torch_function_stack())
    if hasattr(torch, 'get_default_device'):
        state['default_device'] = str(torch.get_default_device())
    if hasattr(torch._C, '_len_torch_dispatch_stack'):
        state['dispatch_modes'] = torch._C._len_torch_dispatch_stack()
    for device in ('cpu', 'cuda'):
        state[f'autocast.{device}'] = torch.is_autocast_enabled(device)
        state[f'autocast.{device}.dtype'] = torch.get_autocast_dtype(device)
    return state


def torch_settings():
    """Every process-wide setting this module knows, as a flat ``{name: value}`` dict."""
    order, flags = sdpa_state()
    state = {'sdpa.priority_order': order}
    state.update({f'sdpa.{name}_enabled': value for name, value in flags.items()})
    state.update(_backends())
    state.update(_modes())
    for module in ('torch._dynamo.config', 'torch._inductor.config', 'torch._functorch.config'):
        state.update(_config(module))
    return state


def settings_diff(before, after):
    """``{name: (before, after)}`` for every setting that differs (or exists in one only)."""
    missing = '<missing>'
    return {k: (before.get(k, missing), after.get(k, missing))
            for k in dict.fromkeys(list(before) + list(after))
            if before.get(k, missing) != after.get(k, missing)}
