"""Train one adapter to memorize a task's targets and measure what it stored (one cell).

The lean path (DESIGN.md §5): with every adapted module at layer ``k`` or deeper, the hidden
states entering layer ``k`` never change during training (frozen base, fixed inputs), so they
are computed once per cell and each step runs only layers ``k..L-1``; the language-model head
is applied only at positions that predict a target token; entries whose prompts share a prefix
(a chat template's system prompt) are packed so that the prefix is computed once per row
(:mod:`collect.packing`). Each shortcut is verified against the full model once per cell
(:func:`check_fast_path`, :func:`lean_forward`), with a fall back to the slower path where an
architecture does not reproduce it.

A cell stopped by the step budget can hand back a resumable training state (adapter tensors,
AdamW moments, step, loss history, curves, objective state, RNG), and :func:`run_cell` can
continue from it: running to ``N`` steps, saving, and resuming to ``M`` steps gives the cell of
a direct run to ``M`` steps (DESIGN.md §5; ``collect run --extend-from``).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from collect.adapters import attach, decoder_layers
from collect.objectives import LN2, make_objective
from collect.packing import pack_batch
from collect.tasks import Entry


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by every cell of a sweep (same budget everywhere)."""

    lr: float = 1e-2
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    max_steps: int = 300
    log_every: int = 10
    patience: int = 50
    min_delta: float = 1e-3
    stop_when_memorized: bool = True
    prefix_cache: bool = True
    lora_alpha: float | None = None
    #: learning-rate schedule: ``constant``; ``linear`` (decay to 0 over ``max_steps``, no
    #: warm-up: the paper's); ``plateau_decay`` (constant until the plateau rule fires, then
    #: multiply the lr by ``decay_factor`` and continue, ``max_decays`` times, then stop);
    #: ``cooldown`` (constant, then linear decay to 0 over the last ``cooldown_steps``: the
    #: stable-then-decay schedule, whose constant phase is the constant run step for step)
    schedule: str = "constant"
    decay_factor: float = 0.1
    max_decays: int = 1
    cooldown_steps: int = 0
    #: dropout on the adapter's input during training steps (the paper: 0.1); never during
    #: the measurements (loss before/after, probabilities, greedy decoding)
    lora_dropout: float = 0.0
    #: where a rank-r cell starts: ``none`` (its fresh initialisation) or ``half_rank`` (the
    #: converged rank-r // 2 adapter of the same target, padded: :mod:`collect.warmstart`)
    warm_start: str = "none"
    #: the training steps' precision: ``none`` (the model's dtype throughout) or ``bfloat16``
    #: (the forward and backward of each training step under :func:`torch.autocast`: matrix
    #: products in bf16, while the residual stream, norms, softmax, the adapter, its gradient
    #: and the optimizer stay in the model's float32); measurements never run under it
    autocast: str = "none"
    #: the convergence stop (0: off): from this step on, a cell stops ("converged") once its
    #: best ΔL grew by at most ``converge_tol`` (relative) over its last ``converge_window``
    #: share of steps; ``max_steps`` is then the cap for cells that never get there
    converge_from: int = 0
    converge_tol: float = 0.01
    converge_window: float = 0.1

    def lr_at(self, step: int, decays: int = 0) -> float:
        """Learning rate of training step ``step`` after ``decays`` plateau decays."""
        if self.schedule == "linear":
            return self.lr * max(0.0, 1.0 - step / self.max_steps)
        if self.schedule == "plateau_decay":
            return self.lr * self.decay_factor**decays
        if self.schedule == "cooldown":
            return self.lr * min(1.0, (self.max_steps - step) / self.cooldown_steps)
        return self.lr


#: training settings added after cells were first collected, with the value every earlier cell
#: was trained with; a setting at that value is left out of a sweep's fingerprint, so the
#: fingerprints (and the cells) of earlier sweeps stay valid
LATER_TRAIN_SETTINGS = {
    "schedule": "constant",
    "decay_factor": 0.1,
    "max_decays": 1,
    "lora_dropout": 0.0,
    "warm_start": "none",
    "autocast": "none",
    "cooldown_steps": 0,
    "converge_from": 0,
    "converge_tol": 0.01,
    "converge_window": 0.1,
}
SCHEDULES = ("constant", "linear", "plateau_decay", "cooldown")
WARM_STARTS = ("none", "half_rank")
AUTOCASTS = ("none", "bfloat16")
#: ``first_exact_step`` values that are not a step: never reached; resumed from a snapshot
#: written before it was recorded, so not known (both NaN in a cell file)
NEVER_EXACT, UNKNOWN_EXACT = -1, -2


def training_precision(train: TrainConfig, device):
    """Context of one training step's forward: :func:`torch.autocast` per ``train.autocast``.

    Only the forward runs inside it; autograd replays the same precisions in the backward.
    """
    import torch

    if train.autocast == "none":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=getattr(torch, train.autocast))


def train_settings(train: TrainConfig) -> dict[str, Any]:
    """Return the settings of ``train`` that define a cell's protocol (fingerprinted).

    Settings of :data:`LATER_TRAIN_SETTINGS` are left out at their earlier value, the
    decay settings unless the schedule is ``plateau_decay``, ``cooldown_steps`` unless
    it is ``cooldown``, and the convergence stop's tolerance and window while it is off.
    """
    out = dataclasses.asdict(train)
    if train.schedule != "plateau_decay":
        out.update({k: LATER_TRAIN_SETTINGS[k] for k in ("decay_factor", "max_decays")})
    if train.schedule != "cooldown":
        out["cooldown_steps"] = LATER_TRAIN_SETTINGS["cooldown_steps"]
    if not train.converge_from:
        out.update({k: LATER_TRAIN_SETTINGS[k] for k in ("converge_tol", "converge_window")})
    return {k: v for k, v in out.items() if LATER_TRAIN_SETTINGS.get(k, object()) != v}


@dataclass
class Batch:
    """Right-padded prompts+targets of all entries, and where the target tokens sit."""

    input_ids: Any  # (B, T) long
    attention_mask: Any  # (B, T) long
    pred_index: Any  # (N,) flat index into B*T of the position predicting each target token
    labels: Any  # (N,) target token ids, in concatenated order
    token_entry: np.ndarray  # (N,) entry of each target token
    prompts: list[list[int]]  # prompt ids per entry (for greedy decoding)
    targets: list[list[int]]  # target ids per entry
    #: (B, T) position ids where they are not 0..T-1 in every row (packed entries), else None
    position_ids: Any = None


def prompt_ids(tokenizer, key: str) -> list[int]:
    """Token ids of an entry's prompt: the chat template when the model has one, else ``key``."""
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": key}], add_generation_prompt=True, tokenize=True
        )
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        return list(ids)
    return list(tokenizer(key, add_special_tokens=False)["input_ids"])


def make_batch(tokenizer, entries: list[Entry], device) -> Batch:
    """Tokenize prompts, append target ids and right-pad into one batch."""
    import torch

    prompts = [prompt_ids(tokenizer, e.key) for e in entries]
    targets = [list(e.target_ids) for e in entries]
    width = max(len(p) + len(t) for p, t in zip(prompts, targets, strict=True))
    pad = tokenizer.pad_token_id
    ids = torch.full((len(entries), width), pad, dtype=torch.long)
    mask = torch.zeros((len(entries), width), dtype=torch.long)
    pred, labels, owner = [], [], []
    for row, (p, t) in enumerate(zip(prompts, targets, strict=True)):
        seq = p + t
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
        pred += [row * width + len(p) - 1 + j for j in range(len(t))]
        labels += t
        owner += [row] * len(t)
    return Batch(
        ids.to(device),
        mask.to(device),
        torch.tensor(pred, device=device),
        torch.tensor(labels, device=device),
        np.asarray(owner),
        prompts,
        targets,
    )


class Forward:
    """Target-token logits of a model with its adapter, full or from a cached prefix."""

    def __init__(self, model, batch: Batch, start_layer: int = 0, prefix=None) -> None:
        self.model, self.batch = model, batch
        self.decoder = model.get_decoder()
        self.head = model.get_output_embeddings()
        self.start_layer = start_layer
        #: hidden states entering ``start_layer``: given (already computed), or computed here
        self._prefix = prefix
        if start_layer > 0 and prefix is None:
            self._prefix = self._hidden_entering(start_layer)

    def _hidden_entering(self, layer: int):
        """Hidden states entering ``layer`` (frozen: computed once, without gradients)."""
        import torch

        _, layers = decoder_layers(self.model)
        captured = {}

        class _Stop(Exception):
            pass

        def grab(module, args, kwargs):
            captured["h"] = args[0] if args else kwargs["hidden_states"]
            raise _Stop

        handle = layers[layer].register_forward_pre_hook(grab, with_kwargs=True)
        try:
            with torch.no_grad():
                self.decoder(
                    input_ids=self.batch.input_ids,
                    attention_mask=self.batch.attention_mask,
                    position_ids=self.batch.position_ids,
                    use_cache=False,
                )
        except _Stop:
            pass
        finally:
            handle.remove()
        return captured["h"].detach()

    @contextlib.contextmanager
    def _suffix_layers(self):
        import torch

        name, layers = decoder_layers(self.model)
        owner = self.model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else self.model
        attr = name.rsplit(".", 1)[-1]
        setattr(owner, attr, torch.nn.ModuleList(list(layers)[self.start_layer :]))
        try:
            yield
        finally:
            setattr(owner, attr, layers)

    def hidden(self):
        """Return the final hidden states (after the last norm) of the whole batch."""
        if self._prefix is None:
            out = self.decoder(
                input_ids=self.batch.input_ids,
                attention_mask=self.batch.attention_mask,
                position_ids=self.batch.position_ids,
                use_cache=False,
            )
            return out.last_hidden_state
        with self._suffix_layers():
            out = self.decoder(
                inputs_embeds=self._prefix,
                attention_mask=self.batch.attention_mask,
                position_ids=self.batch.position_ids,
                use_cache=False,
            )
        return out.last_hidden_state

    def logits(self):
        """Float32 logits at the positions predicting target tokens, shape (N, vocab)."""
        h = self.hidden()
        h = h.reshape(-1, h.shape[-1])[self.batch.pred_index]
        return self.head(h).float()


def model_dtype(model):
    """Return the floating dtype of the model's weights."""
    return next(p.dtype for p in model.parameters() if p.is_floating_point())


def check_fast_path(model, reference: Batch, fast: Forward) -> bool:
    """Whether ``fast`` reproduces the model's own logits on the plain batch ``reference``.

    ``fast`` may run a cached prefix, a packed batch (:mod:`collect.packing`) or both; its
    target tokens are in the same order as ``reference``'s.
    """
    import torch

    with torch.no_grad():
        ref = model(
            input_ids=reference.input_ids, attention_mask=reference.attention_mask, use_cache=False
        )
        ref = ref.logits.reshape(-1, ref.logits.shape[-1])[reference.pred_index].float()
        got = fast.logits()
    # both logits are float32 here; the model's own precision sets how closely two
    # summation orders can agree (bf16 keeps 8 bits of mantissa)
    tol = 1e-3 if model_dtype(model) == torch.float32 else 5e-2
    scale = ref.abs().max().clamp_min(1.0)
    return bool(((got - ref).abs().max() / scale) < tol)


def lean_forward(model, batch: Batch, start_layer: int, pack: bool = True) -> Forward:
    """Return the cheapest :class:`Forward` that reproduces the model on ``batch``.

    Candidates, cheapest first: the batch packed around its shared prompt prefix
    (:func:`collect.packing.pack_batch`, when ``pack`` and it saves work) with the prefix cache
    from ``start_layer``; the plain batch with the cache; the plain batch through the whole
    model. Each shortcut is checked against the full model (:func:`check_fast_path`) and the
    next candidate is used, with a warning, where it does not reproduce it.
    """
    import torch

    candidates = []
    if pack:
        packed = pack_batch(batch, model_dtype(model))
        if packed is not None:
            candidates.append((packed, start_layer, "packed prompts"))
    if start_layer:
        candidates.append((batch, start_layer, "prefix cache"))
    for candidate, start, what in candidates:
        try:
            fwd = Forward(model, candidate, start)
            if check_fast_path(model, batch, fwd):
                return fwd
            why = "does not reproduce the full model here"
        except torch.cuda.OutOfMemoryError:
            raise
        except (RuntimeError, ValueError, TypeError) as err:  # e.g. a kernel without 4-D masks
            why = f"fails here ({type(err).__name__}: {err})"
        warnings.warn(f"{what} {why}; trying the next slower path", stacklevel=2)
        fwd = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return Forward(model, batch, 0)


def token_stats(logits, labels, argmax: bool = True):
    """Per-token loss (nats), probability of the correct token and argmax correctness.

    ``argmax=False`` skips the argmax over the vocabulary and returns None in its place (a
    training step whose objective does not read it: :attr:`uses_argmax` of the objective).
    """
    import torch

    logp = torch.log_softmax(logits, dim=-1)
    lp = logp.gather(1, labels[:, None])[:, 0]
    return -lp, lp.exp(), (logits.argmax(-1) == labels) if argmax else None


def greedy_decode(model, tokenizer, batch: Batch, device) -> np.ndarray:
    """Free-running greedy decoding from each key; returns per-target-token correctness.

    EOS is suppressed until the target's length is reached (``min_new_tokens``): a model that
    would stop early has already made an error at that position, which is what is recorded.
    """
    import torch

    out = np.zeros(len(batch.token_entry), dtype=bool)
    width = max(len(p) for p in batch.prompts)
    n_new = max(len(t) for t in batch.targets)
    pad = tokenizer.pad_token_id
    ids = torch.full((len(batch.prompts), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, p in enumerate(batch.prompts):
        ids[row, width - len(p) :] = torch.tensor(p)
        mask[row, width - len(p) :] = 1
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gen = (
            model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=n_new,
                min_new_tokens=n_new,
                do_sample=False,
                num_beams=1,
                pad_token_id=pad,
                temperature=None,
                top_p=None,
                top_k=None,
            )[:, width:]
            .cpu()
            .numpy()
        )
    start = 0
    for row, t in enumerate(batch.targets):
        out[start : start + len(t)] = gen[row, : len(t)] == np.asarray(t)
        start += len(t)
    return out


@dataclass
class CellResult:
    """Everything measured for one cell (see the data contract, DESIGN.md §3)."""

    status: str
    loss_before: float = math.nan
    loss_after: float = math.nan
    exact_match: float = math.nan
    token_accuracy: float = math.nan
    steps: int = 0
    wall_time: float = math.nan
    n_params: int = 0
    #: bytes of the trainable state at storage precision (:attr:`collect.adapters.Adapter.n_bytes`);
    #: -1 where a path did not record it (the cell file then has no ``n_bytes``: merge derives it)
    n_bytes: int = -1
    stop_reason: str = ""
    error: str = ""
    prefix_cached: bool = False
    prompt_packed: bool = False
    #: plateau decays of the learning rate (``plateau_decay`` schedule)
    lr_decays: int = 0
    #: first training step at which every target token's teacher-forced argmax was correct,
    #: which is exactly when greedy decoding reproduces the target; ``NEVER_EXACT`` (-1) if
    #: never, ``UNKNOWN_EXACT`` (-2) if resumed from a snapshot that did not record it
    first_exact_step: int = -1
    p_before: np.ndarray = field(default_factory=lambda: np.zeros(0))
    p_after: np.ndarray = field(default_factory=lambda: np.zeros(0))
    greedy_correct: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: entropy of each target token's content in bits (:func:`collect.tasks.target_entropy`)
    entropy_bits: np.ndarray = field(default_factory=lambda: np.zeros(0))
    token_entry: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    curve_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    loss_curve: np.ndarray = field(default_factory=lambda: np.zeros(0))
    frac_above_curve: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: resumable training state of a cell stopped by the budget (``keep_state=True`` only)
    state: dict | None = None

    @property
    def loss_reduction(self) -> float:
        """ΔL = loss_before − loss_after (nats per target token)."""
        return self.loss_before - self.loss_after


def plateaued(history: list[float], patience: int, min_delta: float) -> bool:
    """Tell whether training has stopped improving.

    True when the best loss of the last ``patience`` steps improved on the best before them by
    less than ``min_delta`` (relative).
    """
    if len(history) <= patience:
        return False
    before = min(history[:-patience])
    recent = min(history[-patience:])
    return before - recent < min_delta * max(before, 1e-8)


def converged(history: list[float], loss_before: float, window: float, tol: float) -> bool:
    """Tell whether ΔL has converged: the convergence stop's test at the step just logged.

    With ``t = len(history) - 1`` the step just logged, true when the best ΔL of steps
    ``0..t`` (``loss_before`` minus the lowest loss) exceeds the best of steps
    ``0..t - w``, ``w = max(1, round(window * t))``, by at most ``tol`` times itself: the
    cell gained at most ``tol`` of its ΔL over its last ``window`` share of steps. Best-so-far
    values, so an oscillating loss cannot pass the test on a dip.
    """
    t = len(history) - 1
    lookback = max(1, round(window * t))
    if t < lookback:
        return False
    best_now = loss_before - min(history)
    best_then = loss_before - min(history[: t - lookback + 1])
    return best_now > 0 and best_now - best_then <= tol * best_now


def above_rising(curve_steps, frac_curve, step: int, patience: int, start: int = 0) -> bool:
    """Tell whether more target tokens are above threshold than ever before ``patience`` steps ago.

    Uses the logged share of tokens with p > 0.5 (``frac_curve`` at ``curve_steps``): True when
    its maximum over the last ``patience`` steps exceeds its maximum from ``start`` up to then.
    MemFT objectives move tokens across the threshold while the mean loss may stay flat, so a
    loss plateau alone must not stop them.
    """
    logged = list(zip(curve_steps, frac_curve, strict=True))
    recent = [f for s, f in logged if step - patience < s <= step]
    before = [f for s, f in logged if start <= s <= step - patience]
    return bool(recent and before and max(recent) > max(before))


def run_cell(
    model,
    tokenizer,
    entries: list[Entry],
    *,
    task: str,
    method: str,
    modules: str,
    rank: int,
    seed: int,
    train: TrainConfig,
    device,
    keep_state: bool = False,
    resume: dict | None = None,
    pack: bool = True,
    checkpoint: Callable[[dict], None] | None = None,
    checkpoint_every: float = 600.0,
    progress: Callable[[int, float, float], None] | None = None,
    warm_start: list | None = None,
) -> tuple[CellResult, Any]:
    """Train one adapter on ``entries`` and measure it.

    Returns the result and the base model (adapter removed), ready for the next cell. A cell
    whose loss turns NaN is ``diverged``; one that runs out of memory is ``oom``; any other
    exception is ``failed`` with its message. Failed cells still return a result.

    Parameters
    ----------
    model, tokenizer
        Frozen base model (the adapter is attached here and removed again) and its tokenizer.
    entries : list of Entry
        The task's targets.
    task, method, modules : str
        Task name, objective (``sft``/``memft_ot``/``memft_sw``) and adapter placement.
    rank, seed : int
        Adapter rank and the seed of its initialisation (and of MemFT-SW's curriculum).
    train : TrainConfig
        Optimisation settings and stop rules.
    device : torch.device
        Where the batch lives (the model's device).
    keep_state : bool
        When the cell stops because of the budget, put its resumable training state into
        ``result.state`` (see :func:`training_state`).
    resume : dict, optional
        A state from ``result.state`` of the same cell (same entries, method, modules, rank,
        seed and settings) with a budget of at most ``train.max_steps``: training continues from
        it instead of from step 0. The measurements before training are taken as usual.
    pack : bool, default True
        Pack entries whose prompts share a prefix (:mod:`collect.packing`) when that saves
        work and reproduces the model; a speed setting that does not change the cell's result
        beyond floating-point rounding (``result.prompt_packed`` says whether it was used).
    checkpoint : callable, optional
        Called with a :func:`training_state` snapshot at the top of a step whenever
        ``checkpoint_every`` seconds of training have passed since the last one, so that a
        killed run can continue from it (``resume``) instead of from step 0. A run resumed
        from a checkpoint ends with the cell of an uninterrupted run.
    checkpoint_every : float
        Seconds between checkpoints.
    progress : callable, optional
        Called once per logged step (every ``train.log_every`` steps) with the step, the mean
        target loss and the share of target tokens with p > 0.5, e.g. to drive a progress bar.
    warm_start : list of torch.Tensor, optional
        A smaller adapter's tensors (rank r // 2, same placement) copied into the leading
        slices of this one's after ``loss_before`` is measured
        (:func:`collect.warmstart.load_warm_start`); training starts there at step 0.
    """
    import torch

    start = time.perf_counter()
    batch = make_batch(tokenizer, entries, device)
    result = CellResult(status="ok", token_entry=batch.token_entry)
    adapter = attach(
        model,
        modules,
        rank,
        seed=seed,
        lora_alpha=train.lora_alpha,
        lora_dropout=train.lora_dropout,
        tokenizer=tokenizer,
    )
    result.n_params, result.n_bytes = adapter.n_params, adapter.n_bytes
    try:
        _train_and_measure(
            model,
            tokenizer,
            batch,
            adapter,
            result,
            task,
            method,
            seed,
            train,
            device,
            keep_state=keep_state,
            resume=resume,
            pack=pack,
            checkpoint=checkpoint,
            checkpoint_every=checkpoint_every,
            progress=progress,
            warm_start=warm_start,
        )
    except torch.cuda.OutOfMemoryError as err:
        result.status, result.error = "oom", str(err)
    except Exception as err:  # noqa: BLE001 - a failed cell is recorded, never dropped
        result.status, result.error = "failed", f"{type(err).__name__}: {err}"
    finally:
        model = adapter.detach()
    result.wall_time = time.perf_counter() - start
    return result, model


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


@dataclass
class CellLoop:
    """One cell's training loop, less its forward pass: logging, stop rules, lr, snapshots.

    The single-cell loop (:func:`run_cell`) and the batched one
    (:func:`collect.batched.run_cells_batched`) both drive a cell through this class, so a
    cell's bookkeeping is the same wherever it trains. Per step: :meth:`observe` the per-token
    losses (log them, apply the stop rules and the plateau decay); unless it says stop, the
    caller back-propagates the loss it returns and calls :meth:`update`.

    Parameters
    ----------
    objective : object
        The cell's objective (:func:`collect.objectives.make_objective`).
    train : TrainConfig
        Optimisation settings and stop rules.
    result : CellResult
        Receives the stop reason, status and, at :meth:`finish`, the trajectory.
    params : list of torch.Tensor
        The adapter's trainable tensors.
    optimizer : torch.optim.Optimizer
        Their AdamW optimizer.
    """

    objective: Any
    train: TrainConfig
    result: CellResult
    params: list
    optimizer: Any
    history: list[float] = field(default_factory=list)
    curve_steps: list[int] = field(default_factory=list)
    loss_curve: list[float] = field(default_factory=list)
    frac_curve: list[float] = field(default_factory=list)
    first: int = 0
    step: int = 0
    #: first step whose teacher-forced argmax was correct at every target token
    #: (``NEVER_EXACT``: not yet; ``UNKNOWN_EXACT``: resumed from a snapshot without it)
    first_exact_step: int = -1
    decays: int = 0
    plateau_from: int = 0
    done: bool = False

    def __post_init__(self) -> None:
        self.plateau_from = getattr(self.objective, "final_stage_start", 0)

    def resume(self, state: dict) -> None:
        """Continue from a :meth:`snapshot` (the adapter tensors and optimizer are loaded)."""
        self.first = self.step = restore_state(
            state, self.params, self.optimizer, self.objective, self.train.max_steps
        )
        self.history = list(state["history"])
        self.curve_steps = list(state["curve_steps"])
        self.loss_curve = list(state["loss_curve"])
        self.frac_curve = list(state["frac_curve"])
        self.decays = int(state.get("decays", 0))
        # a snapshot written before it was recorded: the step may have passed unseen, so a
        # step seen from here would only be an upper bound; it stays unknown (NaN when stored)
        self.first_exact_step = int(state.get("first_exact_step", UNKNOWN_EXACT))
        self.plateau_from = int(state.get("plateau_from", self.plateau_from))

    def snapshot(self, step: int) -> dict:
        """Return the resumable state on entering ``step`` (see :func:`training_state`)."""
        curves = (self.curve_steps, self.loss_curve, self.frac_curve)
        state = training_state(
            step, self.params, self.optimizer, self.objective, self.history, curves
        )
        state.update(
            decays=self.decays,
            plateau_from=self.plateau_from,
            first_exact_step=self.first_exact_step,
        )
        return state

    def observe(self, step: int, losses, correct, progress=None):
        """Log step ``step``'s per-token losses and apply the stop rules.

        ``correct`` is the teacher-forced argmax's hits (None: not computed). They set
        :attr:`first_exact_step` (all hits: greedy decoding reproduces the target) and reach
        the objective only where it reads them (``objective.uses_argmax``).

        Returns
        -------
        torch.Tensor or None
            The objective's weighted loss to back-propagate, or None when the cell stops
            here (``result.stop_reason`` or ``result.status`` says why).
        """
        train, detached = self.train, losses.detach()
        self.step = step
        mean_loss = float(detached.mean())
        if not math.isfinite(mean_loss):
            self.result.status, self.result.stop_reason = "diverged", "non-finite loss"
            return self._stop()
        self.history.append(mean_loss)
        correct = None if correct is None else correct.detach()
        if correct is not None and self.first_exact_step == NEVER_EXACT and bool(correct.all()):
            self.first_exact_step = step
        if step % train.log_every == 0:
            self.curve_steps.append(step)
            self.loss_curve.append(mean_loss)
            self.frac_curve.append(float((detached < LN2).float().mean()))
            if progress is not None:
                progress(step, mean_loss, self.frac_curve[-1])
        reason = self._stop_reason(step, detached)
        if reason:
            self.result.stop_reason = reason
            return self._stop()
        for group in self.optimizer.param_groups:
            group["lr"] = train.lr_at(step, self.decays)
        if not getattr(self.objective, "uses_argmax", True):
            correct = None
        weights = self.objective.weights(detached, correct, step)
        return (weights * losses).sum() / weights.sum()

    def _stop(self) -> None:
        self.done = True
        return None

    def _stop_reason(self, step: int, losses) -> str:
        """Why the cell stops at ``step`` ("" to go on); a plateau may decay the lr instead."""
        train = self.train
        if step == train.max_steps:
            return "budget"
        if step < getattr(self.objective, "final_stage_start", 0):
            return ""
        if train.stop_when_memorized and bool((losses < LN2).all()):
            return "memorized"
        if (
            train.converge_from
            and step >= train.converge_from
            and converged(
                self.history, self.result.loss_before, train.converge_window, train.converge_tol
            )
        ):
            return "converged"
        if (
            self.objective.plateau_stop
            and plateaued(self.history[self.plateau_from :], train.patience, train.min_delta)
            and not above_rising(
                self.curve_steps, self.frac_curve, step, train.patience, self.plateau_from
            )
        ):
            if train.schedule != "plateau_decay" or self.decays >= train.max_decays:
                return "plateau"
            self.decays, self.plateau_from = self.decays + 1, step
        return ""

    def update(self) -> None:
        """Clip the adapter's gradient and take the optimizer step (after the backward pass)."""
        import torch

        torch.nn.utils.clip_grad_norm_(self.params, self.train.grad_clip)
        self.optimizer.step()

    def finish(self) -> None:
        """Record the trajectory in the result (after the last step)."""
        result = self.result
        result.steps = self.step
        result.lr_decays = self.decays
        result.first_exact_step = self.first_exact_step
        result.curve_steps = np.asarray(self.curve_steps)
        result.loss_curve = np.asarray(self.loss_curve)
        result.frac_above_curve = np.asarray(self.frac_curve)


def _train_and_measure(
    model,
    tokenizer,
    batch,
    adapter,
    result,
    task,
    method,
    seed,
    train,
    device,
    *,
    keep_state=False,
    resume=None,
    pack=True,
    checkpoint=None,
    checkpoint_every=600.0,
    progress=None,
    warm_start=None,
):
    import torch

    fwd = lean_forward(model, batch, adapter.first_layer if train.prefix_cache else 0, pack)
    result.prefix_cached = fwd.start_layer > 0
    result.prompt_packed = fwd.batch is not batch
    with torch.no_grad():
        loss0, p0, _ = token_stats(fwd.logits(), batch.labels)
    result.loss_before = float(loss0.mean())
    result.p_before = p0.cpu().double().numpy()
    if warm_start is not None:  # after loss_before: ΔL stays measured against the base model
        from collect.warmstart import load_warm_start

        load_warm_start(adapter.parameters, warm_start)
    written = getattr(adapter, "write", None) is not None  # a memory written, not trained
    if written:
        adapter.write(batch)
        train = dataclasses.replace(train, max_steps=0)

    objective = make_objective(
        method, task=task, token_entry=batch.token_entry, max_steps=train.max_steps, seed=seed
    )
    optimizer = torch.optim.AdamW(adapter.parameters, lr=train.lr, weight_decay=train.weight_decay)
    loop = CellLoop(objective, train, result, adapter.parameters, optimizer)
    if resume is not None:
        loop.resume(resume)
    state = None
    last_checkpoint = time.perf_counter()
    for step in range(loop.first, train.max_steps + 1):
        if keep_state and step == train.max_steps:
            # the loop's state on entering the last step: resuming here under a larger budget
            # replays this step exactly as a direct run would (its stop rules included)
            state = loop.snapshot(step)
        if (
            checkpoint is not None
            and step > loop.first
            and time.perf_counter() - last_checkpoint >= checkpoint_every
        ):
            checkpoint(loop.snapshot(step))
            last_checkpoint = time.perf_counter()
        with adapter.dropout_active(train.lora_dropout > 0), training_precision(train, device):
            # the argmax always: its all-correct step is when greedy recall first became exact
            losses, _, correct = token_stats(fwd.logits(), batch.labels)
        loss = loop.observe(step, losses, correct, progress)
        if loss is None:
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        loop.update()
    loop.finish()
    if written and result.status == "ok":
        result.stop_reason = "written"
    if result.status != "ok":
        return
    measure_after_training(result, fwd, model, tokenizer, batch, device)
    if result.stop_reason == "budget":
        result.state = state


def measure_after_training(result: CellResult, fwd: Forward, model, tokenizer, batch, device):
    """Record what a trained adapter holds: loss, probabilities, greedy recall, exact match.

    Teacher-forced measurements come from ``fwd`` (the same lean forward training used,
    with the adapter's dropout off); greedy decoding runs the whole model from each key.
    """
    import torch

    with torch.no_grad():
        loss1, p1, correct1 = token_stats(fwd.logits(), batch.labels)
    result.loss_after = float(loss1.mean())
    result.p_after = p1.cpu().double().numpy()
    result.token_accuracy = float(correct1.float().mean())
    greedy = greedy_decode(model, tokenizer, batch, device)
    result.greedy_correct = greedy
    per_entry = [greedy[batch.token_entry == e].all() for e in range(len(batch.targets))]
    result.exact_match = float(np.mean(per_entry))


__all__ = [
    "TrainConfig",
    "CellResult",
    "CellLoop",
    "converged",
    "run_cell",
    "training_state",
    "restore_state",
]
