"""Training objectives: per-token weights for SFT, MemFT-OT and MemFT-SW (DESIGN.md §1).

Every objective turns the per-target-token losses ``L_t`` of one step into weights ``w_t``;
the step's loss is ``sum(w * L) / sum(w)``. Objectives may keep state across steps
(MemFT-SW's anchor and window), so make a fresh one per cell with :func:`make_objective`.
That state is exposed by ``state_dict``/``load_state_dict`` so that training can be resumed
(:func:`budget_dependent` says which objectives can be resumed under a larger step budget).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from collect.errors import CollectError

LN2 = math.log(2.0)
METHODS = ("sft", "memft_ot", "memft_sw")


def threshold_mask(losses):
    """MemFT-OT weights: 1 where ``L_t > ln 2`` (p < 0.5), else 0; all ones if none is above."""
    mask = (losses > LN2).to(losses.dtype)
    return mask if bool(mask.any()) else losses.new_ones(losses.shape)


class _Stateless:
    """Objectives without state across steps: nothing to save or restore.

    (MemFT-SW's PhoneBook curriculum counts as stateless: its shuffle and stages follow from
    the seed and the step.)
    """

    #: whether a flat mean loss means this objective has stopped making progress (the plateau
    #: stop rule applies); see :class:`MemFTSWLong` for one where it does not
    plateau_stop = True
    #: whether :meth:`weights` reads ``correct`` (the teacher-forced argmax hits); a step
    #: skips that argmax over the vocabulary for objectives that do not
    uses_argmax = False

    def state_dict(self) -> dict:
        """Return the objective's state across steps (none)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore the state of :meth:`state_dict` (nothing to restore)."""


class SFT(_Stateless):
    """Plain supervised finetuning: the mean loss over target tokens."""

    def weights(self, losses, correct, step):  # noqa: D102 - see module docstring
        return losses.new_ones(losses.shape)


class MemFTOT(_Stateless):
    """MemFT-OT: spend the gradient only on tokens still below the p > 0.5 threshold."""

    def weights(self, losses, correct, step):  # noqa: D102
        return threshold_mask(losses)


@dataclass
class MemFTSWLong:
    """MemFT-SW for one long target: soft weights around the first mispredicted position.

    ``w_t = sigmoid(10 (L_t - ln 2))`` times ``exp(-(t - a) / decay)`` inside a window of
    ``window * m`` tokens starting at the anchor ``a`` (the first position whose teacher-forced
    argmax is wrong) and times ``outside`` elsewhere. The multiplier ``m`` starts at 1 and grows
    by ``grow`` (up to ``max_mult``) each time the anchor has stayed put for ``patience`` steps.

    It never stops on a plateau (``plateau_stop = False``): it works on a few dozen tokens at a
    time, so the mean loss over a long target, and the count of tokens above p = 0.5, can stay
    flat for many steps while the tokens it weighs improve. On the shipped sweep the plateau
    rule stopped it after 72 steps at rank 4, ℓ = 512, with none of its tokens above 0.5 yet.
    It stops when every token is memorized or at the budget.
    """

    plateau_stop = False
    uses_argmax = True  # the anchor is the first position whose argmax is wrong
    window: int = 50
    decay: float = 20.0
    outside: float = 0.01
    grow: float = 0.5
    max_mult: float = 4.0
    patience: int = 3
    _anchor: int = -1
    _stuck: int = 0
    _mult: float = 1.0

    def weights(self, losses, correct, step):  # noqa: D102
        import torch

        soft = torch.sigmoid(10.0 * (losses - LN2))
        wrong = (~correct).nonzero()
        if len(wrong) == 0:
            return soft if bool((soft > 1e-6).any()) else losses.new_ones(losses.shape)
        anchor = int(wrong[0])
        if anchor == self._anchor:
            self._stuck += 1
            if self._stuck >= self.patience:
                self._mult = min(self.max_mult, self._mult + self.grow)
                self._stuck = 0
        else:
            self._anchor, self._stuck = anchor, 0
        pos = torch.arange(len(losses), device=losses.device, dtype=losses.dtype)
        inside = (pos >= anchor) & (pos < anchor + self.window * self._mult)
        shape = torch.where(inside, torch.exp(-(pos - anchor) / self.decay), self.outside)
        return soft * shape

    def state_dict(self) -> dict:
        """Return the anchor, how long it has stayed put, and the window multiplier."""
        return {"anchor": self._anchor, "stuck": self._stuck, "mult": self._mult}

    def load_state_dict(self, state: dict) -> None:
        """Restore the state of :meth:`state_dict`."""
        self._anchor = int(state["anchor"])
        self._stuck = int(state["stuck"])
        self._mult = float(state["mult"])


@dataclass
class MemFTSWPhonebook(_Stateless):
    """MemFT-SW for many short entries: the OT hard mask plus a curriculum over entries.

    The entry list is shuffled once (from the cell's seed); stage ``k`` of ``len(fractions)``
    exposes the first ``fractions[k]`` share of it. Training is full-batch, so an epoch is one
    step; stages therefore advance every ``stage_steps`` steps (an epoch boundary each time).
    """

    token_entry: np.ndarray
    stage_steps: int
    seed: int
    fractions: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8, 1.0)
    _order: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        n_entries = int(self.token_entry.max()) + 1
        self._order = np.random.default_rng(self.seed).permutation(n_entries)

    def stage(self, step: int) -> int:
        """Curriculum stage (0-based) at optimizer step ``step``."""
        return min(step // max(self.stage_steps, 1), len(self.fractions) - 1)

    @property
    def final_stage_start(self) -> int:
        """First step of the last stage (convergence checks wait for it)."""
        return (len(self.fractions) - 1) * max(self.stage_steps, 1)

    def weights(self, losses, correct, step):  # noqa: D102
        import torch

        frac = self.fractions[self.stage(step)]
        n_shown = max(1, math.ceil(frac * len(self._order)))
        shown = np.isin(self.token_entry, self._order[:n_shown])
        exposed = torch.as_tensor(shown, device=losses.device, dtype=losses.dtype)
        mask = (losses > LN2).to(losses.dtype) * exposed
        return mask if bool(mask.any()) else exposed


def budget_dependent(method: str, task: str) -> bool:
    """Tell whether a cell's training path depends on the step budget ``max_steps``.

    Only MemFT-SW on PhoneBook does: its curriculum stages last ``max_steps // 10`` steps and the
    stop rules wait for the last stage. SFT and MemFT-OT ignore the budget, and MemFT-SW's window
    variant (long context) depends only on the losses and its own state. For the others, the
    first ``N`` steps of a run with a larger budget are those of a run with budget ``N``, so such a
    cell can be continued from its saved state instead of being re-run (``--extend-from``).
    """
    if method not in METHODS:
        raise CollectError(f"unknown method {method!r}; expected one of {list(METHODS)}.")
    return method == "memft_sw" and task == "phonebook"


def make_objective(method: str, *, task: str, token_entry: np.ndarray, max_steps: int, seed: int):
    """Build a fresh objective for one cell.

    Parameters
    ----------
    method : {"sft", "memft_ot", "memft_sw"}
        Training objective.
    task : str
        ``"phonebook"`` selects MemFT-SW's curriculum variant; anything else the window variant.
    token_entry : ndarray
        Entry index of each target token (for the curriculum).
    max_steps : int
        Step budget; curriculum stages take ``max_steps // (2 * 5)`` steps each, so the full
        set is exposed by the middle of the budget.
    seed : int
        Seed of the curriculum's shuffle.
    """
    if method == "sft":
        return SFT()
    if method == "memft_ot":
        return MemFTOT()
    if method == "memft_sw":
        if task == "phonebook":
            return MemFTSWPhonebook(token_entry, stage_steps=max(1, max_steps // 10), seed=seed)
        return MemFTSWLong()
    raise CollectError(f"unknown method {method!r}; expected one of {list(METHODS)}.")
