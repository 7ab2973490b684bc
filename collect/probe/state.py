"""A resumable snapshot of the training loop (:func:`training_state`) and its loading back."""

from __future__ import annotations

import copy


def _cpu(obj):
    """Deep-copy ``obj``, moving every tensor to the CPU (for saving)."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_cpu(v) for v in obj)
    return copy.deepcopy(obj)


def training_state(step, params, optimizer, objective, history, curves) -> dict:
    """Snapshot the training loop at the top of ``step``, before its forward pass.

    Parameters
    ----------
    step : int
        The step about to run (the budget the cell stopped at).
    params : list of torch.Tensor
        The adapter's trainable tensors (never the base model's weights).
    optimizer : torch.optim.Optimizer
        Its ``state_dict`` (AdamW's step count and moments) is saved.
    objective : object
        Its ``state_dict()`` (MemFT-SW's anchor and window) is saved.
    history : list of float
        Mean losses of steps ``0 .. step-1`` (the plateau rule reads them).
    curves : tuple of lists
        ``(curve_steps, loss_curve, frac_curve)`` logged so far.

    Returns
    -------
    dict
        Plain tensors, lists and numbers, on the CPU (``torch.save``-able, loadable with
        ``weights_only=True``). The random number generator's state is the global one (a
        batched cell swaps its own in first, :class:`collect.batched.RngSlot`).
    """
    import torch

    curve_steps, loss_curve, frac_curve = curves
    state = {
        "step": int(step),
        "params": _cpu(list(params)),
        "optimizer": _cpu(optimizer.state_dict()),
        "objective": copy.deepcopy(objective.state_dict()),
        "history": [float(x) for x in history],
        "curve_steps": [int(x) for x in curve_steps],
        "loss_curve": [float(x) for x in loss_curve],
        "frac_curve": [float(x) for x in frac_curve],
        "rng": torch.get_rng_state(),
    }
    if params and params[0].is_cuda:
        state["cuda_rng"] = torch.cuda.get_rng_state(params[0].device)
    return state


def restore_state(state: dict, params, optimizer, objective, max_steps: int) -> int:
    """Load a :func:`training_state` snapshot into fresh adapter tensors; return its step."""
    import torch

    step = int(state["step"])
    if step > max_steps:
        raise ValueError(f"cannot resume from step {step} under a smaller budget {max_steps}")
    saved_params = state["params"]
    shapes = [tuple(p.shape) for p in params]
    if [tuple(t.shape) for t in saved_params] != shapes:
        raise ValueError(f"saved adapter tensors do not fit this adapter (shapes {shapes})")
    with torch.no_grad():
        for param, saved in zip(params, saved_params, strict=True):
            param.copy_(saved.to(param.device, param.dtype))
    optimizer.load_state_dict(state["optimizer"])
    objective.load_state_dict(state["objective"])
    torch.set_rng_state(state["rng"])
    if "cuda_rng" in state and params[0].is_cuda:
        torch.cuda.set_rng_state(state["cuda_rng"], params[0].device)
    return step
