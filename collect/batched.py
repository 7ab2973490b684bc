"""Train several cells of one target side by side, in one batched forward and backward.

Cells that share a model, a task, a target (length, random_ratio, data seed) and the adapter
placement also share the frozen hidden states entering the adapted layer. This module trains
their adapters together: the batch is repeated once per cell, replica ``k`` runs through cell
``k``'s adapter, and one backward pass gives every cell its own gradient (the cells' parameters
are disjoint). Each cell keeps its own loss and objective, learning-rate schedule, dropout
masks, gradient clipping, AdamW state, stop rule, checkpoints and measurements: the
bookkeeping is :class:`collect.probe.CellLoop`, the same one :func:`collect.probe.run_cell`
drives. Ranks may differ: adapters are zero-padded to the largest rank inside the forward
pass, which leaves each cell's output and gradient unchanged. A cell that stops is measured at
once and leaves the batch; cells may start from a checkpoint at different steps.

Dropout draws each cell's masks from that cell's own random stream (:class:`RngSlot`), seeded
as a separate run seeds it, so the masks are the ones a separate run draws.

Scope: the paper's placement, one ``mlp_block`` adapter at a single layer, with the prefix
cache (the shared part); :func:`batchable` tells. The results equal separate runs up to
floating-point summation order (``tests/collect/test_batched.py``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from collect.adapters import attach, decoder_layers, parse_modules, resolve_layers
from collect.errors import CollectError
from collect.malloc import keep_freed_memory
from collect.objectives import make_objective
from collect.probe import (
    Batch,
    CellLoop,
    CellResult,
    Forward,
    TrainConfig,
    lean_forward,
    make_batch,
    measure_after_training,
    token_stats,
    training_precision,
)
from collect.tasks import Entry


@dataclass(frozen=True)
class CellSpec:
    """What differs between cells trained together: objective, rank, initialisation seed."""

    method: str
    rank: int
    seed: int


def step_stats(compile_step: bool | str = False) -> Callable:
    """Return the function a training step computes its per-token statistics with.

    ``False``: :func:`collect.probe.token_stats`, as a single cell's step. ``True`` (the
    inductor backend) or a backend's name: the same function through :func:`torch.compile`
    (log-softmax over the vocabulary, the target's log-probability and the argmax fused). The
    compiled one is an opt-in for the GPU, where it is not yet measured; on the CPU it gives
    the eager results (``tests/collect/test_batched.py``).
    """
    if compile_step is False:
        return token_stats
    if not (compile_step is True or (isinstance(compile_step, str) and compile_step)):
        raise CollectError(
            f"compile_step must be true, false or a torch.compile backend's name (e.g. "
            f"'inductor'); got {compile_step!r}."
        )
    import torch

    backend = "inductor" if compile_step is True else compile_step
    return torch.compile(token_stats, backend=backend, dynamic=True)


class BatchOutOfMemory(CollectError):
    """A batch of several cells ran out of accelerator memory; run its cells one by one."""


def batchable(modules: str, train: TrainConfig) -> bool:
    """Tell whether cells with this placement and these settings can train batched.

    True for one ``mlp_block`` adapter at a single layer (whatever the layer index means for
    the model: a list or ``all`` is refused) with the prefix cache on.
    """
    spec = parse_modules(modules)
    return (
        spec.is_block and spec.layers is not None and len(spec.layers) == 1 and (train.prefix_cache)
    )


class RngSlot:
    """One cell's own random-number stream, swapped in while that cell draws from it.

    A separate run draws its adapter's initialisation and then its dropout masks from the
    global generator seeded with the cell's seed. A slot captures the global state right after
    the cell's initialisation; :meth:`active` makes it the global state for a while (a
    dropout mask, a snapshot, a restore) and keeps what was drawn.
    """

    def __init__(self, cuda_device=None) -> None:
        self.cuda_device = cuda_device
        self.state = self._get()

    def _get(self):
        import torch

        cuda = None if self.cuda_device is None else torch.cuda.get_rng_state(self.cuda_device)
        return torch.get_rng_state(), cuda

    def _set(self, state) -> None:
        import torch

        cpu, cuda = state
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state(cuda, self.cuda_device)

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Make this slot's stream the global one inside the block."""
        outside = self._get()
        self._set(self.state)
        try:
            yield
        finally:
            self.state = self._get()
            self._set(outside)


def _stacked_block(mlp, params: list[tuple[Any, Any]], slots: list[RngSlot], dropout: float):
    """Return a module computing ``mlp(x) + B_k A_k drop_k(x)`` for replica ``k`` of the batch.

    ``params[k] = (A_k, B_k)`` with shapes ``(r_k, d)`` and ``(d, r_k)``; ``active`` lists the
    cells whose replicas the batch holds, in order. The delta is computed in the adapters'
    dtype, as :class:`collect.adapters.MLPBlockAdapter` does. ``dropout_on`` switches the
    dropout (training steps only); cell ``k``'s masks come from ``slots[k]``.
    """
    import torch
    import torch.nn.functional as F  # noqa: N812 - the usual name

    class _Stacked(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = mlp
            self.params = params
            self.active = list(range(len(params)))
            self.dropout_on = False

        def _inputs(self, x, dtype):
            """Return the adapters' inputs, one replica per active cell: shape (K, rows*T, d)."""
            replicas = x.to(dtype).chunk(len(self.active), dim=0)
            if self.dropout_on and dropout > 0:
                dropped = []
                for k, replica in zip(self.active, replicas, strict=True):
                    with slots[k].active():
                        dropped.append(F.dropout(replica, dropout, training=True))
                replicas = dropped
            return torch.stack([r.reshape(-1, x.shape[-1]) for r in replicas])

        def forward(self, x):
            rmax = max(self.params[k][0].shape[0] for k in self.active)
            a = torch.stack(
                [
                    F.pad(self.params[k][0], (0, 0, 0, rmax - self.params[k][0].shape[0]))
                    for k in self.active
                ]
            )  # (K, rmax, d)
            b = torch.stack(
                [
                    F.pad(self.params[k][1], (0, rmax - self.params[k][1].shape[1]))
                    for k in self.active
                ]
            )  # (K, d, rmax)
            xs = self._inputs(x, a.dtype)
            delta = torch.bmm(torch.bmm(xs, a.transpose(1, 2)), b.transpose(1, 2))
            return self.inner(x) + delta.reshape(x.shape).to(x.dtype)

    return _Stacked()


def _initial_adapters(model, modules: str, cells: Sequence[CellSpec], train: TrainConfig):
    """Each cell's fresh adapter tensors and random stream, as :func:`attach` leaves them."""
    params, slots = [], []
    for cell in cells:
        adapter = attach(model, modules, cell.rank, seed=cell.seed, lora_alpha=train.lora_alpha)
        a, b = (p.detach().clone().requires_grad_(True) for p in adapter.parameters)
        adapter.detach()
        params.append((a, b))
        slots.append(RngSlot(a.device if a.is_cuda else None))
    return params, slots


def _replicated(fwd: Forward, k: int) -> Forward:
    """Return a :class:`Forward` over ``k`` copies of ``fwd``'s batch (its prefix reused)."""
    import torch

    batch = fwd.batch
    rows, width = batch.input_ids.shape

    def rep(t):
        return None if t is None else t.repeat(k, *([1] * (t.dim() - 1)))

    offsets = [batch.pred_index + j * rows * width for j in range(k)]
    copies = Batch(
        rep(batch.input_ids),
        rep(batch.attention_mask),
        torch.cat(offsets),
        rep(batch.labels),
        batch.token_entry,
        batch.prompts,
        batch.targets,
        rep(batch.position_ids),
    )
    return Forward(fwd.model, copies, fwd.start_layer, prefix=rep(fwd._prefix))  # noqa: SLF001


@dataclass
class _Batched:
    """What the cells of one batch share: the forward, the batch, the stacked adapters."""

    fwd: Forward
    batch: Batch
    tokenizer: Any
    device: Any
    stacked: Any
    slots: list[RngSlot]
    train: TrainConfig
    checkpoint_every: float
    on_done: Callable[[int, CellResult], None] | None
    stats: Callable = token_stats  # per-token statistics of a training step (step_stats)


@dataclass
class _Cell:
    """A cell in the batch: its loop, its hooks and the compute time charged to it."""

    loop: CellLoop
    keep_state: bool
    checkpoint: Callable[[dict], None] | None
    progress: Callable[[int, float, float], None] | None
    step: int = 0
    spent: float = 0.0
    state: dict | None = None


def _per_cell(value, n: int, what: str) -> list:
    """Expand a setting given once for every cell, or check a list of one per cell."""
    if isinstance(value, list | tuple):
        if len(value) != n:
            raise CollectError(f"{what}: give one per cell ({n}), got {len(value)}.")
        return list(value)
    return [value] * n


def run_cells_batched(
    model,
    tokenizer,
    entries: list[Entry],
    *,
    task: str,
    modules: str,
    cells: Sequence[CellSpec],
    train: TrainConfig,
    device,
    pack: bool = True,
    keep_state: bool | Sequence[bool] = False,
    resume: Sequence[dict | None] | None = None,
    checkpoint: Sequence[Callable[[dict], None] | None] | None = None,
    checkpoint_every: float = 600.0,
    progress: Sequence[Callable[[int, float, float], None] | None] | None = None,
    on_done: Callable[[int, CellResult], None] | None = None,
    compile_step: bool | str = False,
) -> list[CellResult]:
    """Train the adapters of ``cells`` on ``entries`` together and measure each.

    Parameters
    ----------
    model, tokenizer
        Frozen base model (left unchanged on return) and its tokenizer.
    entries : list of Entry
        The target every cell memorizes.
    task, modules : str
        Task name and the adapter placement: ``mlp_block@L`` at one layer (:func:`batchable`).
    cells : sequence of CellSpec
        The cells: objective, rank and seed of each.
    train : TrainConfig
        Optimisation settings and stop rules (shared, as in a sweep).
    device : torch.device
        The model's device.
    pack : bool
        Pack entries around their shared prompt prefix where that reproduces the model.
    keep_state, resume, checkpoint, progress
        As for :func:`collect.probe.run_cell`, one per cell (``keep_state`` may be one bool
        for all). Checkpoints are taken for every running cell at once, every
        ``checkpoint_every`` seconds; a :class:`collect.timelimit.TimeLimitReached` raised by
        one cell's callback is raised again after every running cell's callback has run (so
        that each saves its state).
    checkpoint_every : float
        Seconds between checkpoints.
    on_done : callable, optional
        Called with ``(k, result)`` as soon as cell ``k`` is measured (e.g. to write it), while
        the others go on training.
    compile_step : bool or str
        Compile the training step's per-token statistics (:func:`step_stats`); off by
        default. The measurements are never compiled.

    Returns
    -------
    list of CellResult
        One per cell, in order, as :func:`collect.probe.run_cell` would return it. Each
        ``wall_time`` is the compute charged to the cell: an equal share of the shared setup
        and of each step it took part in, plus its own measurements.

    Raises
    ------
    BatchOutOfMemory
        When several cells together run out of accelerator memory; the cells finished before
        were passed to ``on_done``, the others should run one by one.

    Notes
    -----
    Raises the process's malloc thresholds on glibc, as :func:`collect.probe.run_cell` does.
    """
    import torch

    keep_freed_memory()
    n = len(cells)
    if not cells:
        raise CollectError("no cells to train: give at least one CellSpec.")
    if not batchable(modules, train):
        raise CollectError(
            f"batched cells need one mlp_block adapter at a single layer and the prefix cache; "
            f"got modules={modules!r}, prefix_cache={train.prefix_cache}. Run these cells one "
            "by one (collect.probe.run_cell)."
        )
    keep = _per_cell(keep_state, n, "keep_state")
    resumes = _per_cell(resume, n, "resume")
    checkpoints = _per_cell(checkpoint, n, "checkpoint")
    bars = _per_cell(progress, n, "progress")
    stats = step_stats(compile_step)
    _, layers = decoder_layers(model)
    (chosen,) = resolve_layers(parse_modules(modules), len(layers))
    start = time.perf_counter()
    batch = make_batch(tokenizer, entries, device)
    params, slots = _initial_adapters(model, modules, cells, train)
    fwd = lean_forward(model, batch, chosen, pack)
    if fwd.start_layer == 0:
        raise CollectError(
            "the prefix cache does not reproduce this model, so cells share nothing; "
            "run them one by one (collect.probe.run_cell)."
        )
    with torch.no_grad():
        loss0, p0, _ = token_stats(fwd.logits(), batch.labels)
    runs = []
    for k, (cell, (a, b)) in enumerate(zip(cells, params, strict=True)):
        result = CellResult(status="ok", token_entry=batch.token_entry)
        result.loss_before, result.p_before = float(loss0.mean()), p0.cpu().double().numpy()
        result.n_params = int(a.numel() + b.numel())
        result.n_bytes = int(a.numel() * a.element_size() + b.numel() * b.element_size())
        result.prefix_cached, result.prompt_packed = True, fwd.batch is not batch
        objective = make_objective(
            cell.method,
            task=task,
            token_entry=batch.token_entry,
            max_steps=train.max_steps,
            seed=cell.seed,
        )
        optimizer = torch.optim.AdamW([a, b], lr=train.lr, weight_decay=train.weight_decay)
        loop = CellLoop(objective, train, result, [a, b], optimizer)
        if resumes[k] is not None:
            with slots[k].active():
                loop.resume(resumes[k])
        runs.append(_Cell(loop, keep[k], checkpoints[k], bars[k], step=loop.first))
    setup = (time.perf_counter() - start) / n
    for run in runs:
        run.spent = setup
    layer = layers[chosen]
    original = layer.mlp
    stacked = _stacked_block(original, params, slots, train.lora_dropout)
    shared = _Batched(
        fwd, batch, tokenizer, device, stacked, slots, train, checkpoint_every, on_done, stats
    )
    layer.mlp = stacked
    try:
        _train_together(shared, runs)
    finally:
        layer.mlp = original
    return [run.loop.result for run in runs]


def _train_together(shared: _Batched, runs: list[_Cell]) -> None:
    """Run the shared loop: one forward and backward per step for every running cell."""
    import torch

    active, rep = None, None
    last_checkpoint = time.perf_counter()
    while now := [k for k, run in enumerate(runs) if not run.loop.done]:
        began = time.perf_counter()
        for k in now:
            run = runs[k]
            if run.keep_state and run.step == shared.train.max_steps:
                with shared.slots[k].active():
                    run.state = run.loop.snapshot(run.step)
        if began - last_checkpoint >= shared.checkpoint_every:
            _checkpoint_all([runs[k] for k in now], [shared.slots[k] for k in now])
            last_checkpoint = time.perf_counter()
        if now != active:  # a cell stopped: the batch shrinks
            active, shared.stacked.active = now, now
            rep = _replicated(shared.fwd, len(now))
        try:
            with training_precision(shared.train, shared.device):  # the forward only
                logits = _forward_together(shared.stacked, rep, len(active), shared.batch)
            stopped = _step_together(runs, active, logits, shared.batch, shared.stats)
        except torch.cuda.OutOfMemoryError as err:
            _fail(runs, active, "oom", str(err), shared.on_done, several=len(active) > 1)
            return
        except Exception as err:  # noqa: BLE001 - failed cells are recorded, as run_cell does
            _fail(runs, active, "failed", f"{type(err).__name__}: {err}", shared.on_done)
            return
        share = (time.perf_counter() - began) / len(active)
        for k in active:
            runs[k].spent += share
        for k in stopped:
            _measure(shared, runs[k], k)


def _forward_together(stacked, rep, n_active: int, batch):
    """Training-step logits of every active cell, shape (cells, target tokens, vocab)."""
    stacked.dropout_on = True
    try:
        return rep.logits().reshape(n_active, len(batch.labels), -1)
    finally:
        stacked.dropout_on = False


def _step_together(runs, active, logits, batch, stats=token_stats) -> list[int]:
    """One training step of every active cell from their logits; return the cells that stopped."""
    total, stepping, stopped = None, [], []
    for j, k in enumerate(active):
        run = runs[k]
        losses, _, correct = stats(logits[j], batch.labels, run.loop.argmax_wanted)
        loss = run.loop.observe(run.step, losses, correct, run.progress)
        if loss is None:
            stopped.append(k)
            continue
        total = loss if total is None else total + loss
        stepping.append(k)
    if total is not None:
        for k in stepping:
            runs[k].loop.optimizer.zero_grad(set_to_none=True)
        total.backward()
        for k in stepping:
            runs[k].loop.update()
            runs[k].step += 1
    return stopped


def _checkpoint_all(runs: list[_Cell], slots: list[RngSlot]) -> None:
    """Call every running cell's checkpoint; re-raise a time limit once all have saved.

    When one cell's callback says the limit has passed, the cells asked before it are asked
    again, so that each saves its state at the limit.
    """
    from collect.timelimit import TimeLimitReached

    due = [(run, slot) for run, slot in zip(runs, slots, strict=True) if run.checkpoint]
    due = [(run, slot) for run, slot in due if run.step > run.loop.first]
    reached, saved_at_limit = None, set()
    for _ in range(2):  # a second round for the cells asked just before the limit passed
        for k, (run, slot) in enumerate(due):
            if k in saved_at_limit:
                continue
            with slot.active():
                state = run.loop.snapshot(run.step)
            try:
                run.checkpoint(state)
            except TimeLimitReached as stop:
                reached = stop
                saved_at_limit.add(k)
        if reached is None:
            return
    raise reached


def _measure(shared: _Batched, run: _Cell, k: int) -> None:
    """Record a stopped cell's trajectory and measurements (as run_cell does); hand it on."""
    began = time.perf_counter()
    result = run.loop.result
    run.loop.finish()
    if result.status == "ok":
        _measure_alone(shared, result, k)
        if result.status == "ok" and result.stop_reason == "budget":
            result.state = run.state
    result.wall_time = run.spent + time.perf_counter() - began
    if shared.on_done is not None:
        shared.on_done(k, result)


def _measure_alone(shared: _Batched, result: CellResult, k: int) -> None:
    """Measure cell ``k`` through its own adapter; record a failure as run_cell does."""
    import torch

    stacked = shared.stacked
    active, stacked.active = stacked.active, [k]  # the plain batch, this cell's adapter
    try:
        measure_after_training(
            result, shared.fwd, shared.fwd.model, shared.tokenizer, shared.batch, shared.device
        )
    except torch.cuda.OutOfMemoryError as err:
        result.status, result.error = "oom", str(err)
    except Exception as err:  # noqa: BLE001 - a failed cell is recorded, never dropped
        result.status, result.error = "failed", f"{type(err).__name__}: {err}"
    finally:
        stacked.active = active


def _fail(runs, active, status: str, error: str, on_done, several: bool = False) -> None:
    """Record every active cell as failed (or out of memory), as run_cell records one."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if several:
        raise BatchOutOfMemory(
            f"{len(active)} cells batched together ran out of memory ({error}); run them one "
            "by one or in smaller batches."
        )
    for k in active:
        run = runs[k]
        run.loop.done = True
        run.loop.finish()
        run.loop.result.status, run.loop.result.error = status, error
        run.loop.result.wall_time = run.spent
        if on_done is not None:
            on_done(k, run.loop.result)


__all__ = [
    "BatchOutOfMemory",
    "CellSpec",
    "RngSlot",
    "batchable",
    "run_cells_batched",
    "step_stats",
]
