"""The FLOP estimate of a cell (collect.cost), written out by hand on a toy model shape."""

import pytest

from collect.cost import ModelShape, cell_flops, seconds_per_flop


def test_flop_estimate_is_the_written_out_sum():
    w, a, h = 1000, 8, 5000  # weights per layer, attention width, head weights
    shape = ModelShape(layer_weights=(w, w, w), attn_width=a, head_weights=h)
    rows, targets, n_params, steps = (10, 6), 7, 40, 5
    positions = 16

    def attn(memory=0):
        return 4.0 * a * sum(n * (n + 1) / 2 + n * memory for n in rows)

    fwd = 2.0 * w * positions + attn()
    # LoRA at layer 1 with the prefix cache: layer 0 once, layers 1-2 forward + backward
    f = cell_flops(shape, "mlp_block@1", rows, targets, n_params, steps, True)
    per_step = 2 * fwd + 2 * (2.0 * w * positions + 2 * attn()) + 4.0 * h * targets
    per_step += 6.0 * n_params * positions
    assert f["once"] == pytest.approx(fwd, rel=1e-12)
    assert f["per_step"] == pytest.approx(per_step, rel=1e-12)
    assert f["flops"] == pytest.approx(fwd + steps * per_step, rel=1e-12)
    assert f["grad_layers"] == 2
    # without the cache layer 0 runs forward every step, and nothing runs once
    g = cell_flops(shape, "mlp_block@1", rows, targets, n_params, steps, False)
    assert g["once"] == 0 and g["per_step"] == pytest.approx(per_step + fwd, rel=1e-12)
    # memory tokens read before the key pass every layer with their m positions
    m = cell_flops(shape, "memtok:4", rows, targets, n_params, steps, True)
    fwd_m = 2.0 * w * (positions + 4) + attn(4)
    bwd_m = 2.0 * w * (positions + 4) + 2 * attn(4)
    assert m["per_step"] == pytest.approx(
        3 * (fwd_m + bwd_m) + 4.0 * h * targets + 6.0 * n_params, rel=1e-12
    )
    # a KV prefix adds slots to the attention of layers >= k only
    kv = cell_flops(shape, "kv:4@2", rows, targets, n_params, steps, True)
    assert kv["once"] == pytest.approx(2 * fwd, rel=1e-12)
    assert kv["per_step"] == pytest.approx(
        2.0 * w * positions
        + attn(4)
        + 2.0 * w * positions
        + 2 * attn(4)
        + 4.0 * h * targets
        + 6.0 * n_params,
        rel=1e-12,
    )
    # sparse KV is written by one forward pass with the attention read back, no steps
    skv = cell_flops(shape, "skv:4@all", rows, targets, n_params, 0, True)
    assert skv["per_step"] == 0 and skv["flops"] == pytest.approx(
        3 * (2.0 * w * positions + 2 * attn()), rel=1e-12
    )


def _price_module():
    import importlib.util
    import os

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    spec = importlib.util.spec_from_file_location(
        "collect_analysis", os.path.join(root, "analysis", "01_collect.py")
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_price_turns_each_cells_flops_into_hours_at_the_measured_speed(
    tmp_path, tiny_sweep, capsys
):
    """Cells whose wall time is exactly c x their FLOPs measure c; the price is c x FLOPs."""
    import json

    import numpy as np

    from collect.config import config_from_dict
    from collect.cost import key_flops
    from collect.sweep import run_sweep

    raw = tiny_sweep(grid=[{"tasks": ["long_context"], "random_ratios": [1.0]}])
    out = tmp_path / "done"
    done = run_sweep(config_from_dict(raw), out, progress=False, merge_to=out / "d.nc")
    rate = 1e-3  # seconds per FLOP: large, so that the printed hours are large numbers
    cells = done[["steps", "status", "n_params"]].to_dataframe().reset_index()
    for _, c in cells[cells["status"] == "ok"].iterrows():
        flops = key_flops(
            "tiny-random",
            "long_context",
            int(c["length"]),
            1.0,
            0,
            "mlp@2",
            steps=float(c["steps"]),
            n_params=float(c["n_params"]),
        )["flops"]
        where = {d: c[d] for d in done["wall_time"].dims}
        done["wall_time"].loc[where] = rate * flops
    mod = _price_module()
    assert np.allclose(seconds_per_flop(done), rate, rtol=1e-12)

    pending = tiny_sweep(
        grid=[
            {
                "tasks": ["long_context"],
                "random_ratios": [1.0],
                "modules": ["memtok:4"],
                "ranks": [1],
                "lengths": [20, 40],
            }
        ]
    )
    sweep = tmp_path / "pending.json"
    sweep.write_text(json.dumps(pending))
    mod.price_sweep(done, str(sweep), budget=100)
    printed = capsys.readouterr().out
    hours = (
        sum(
            key_flops("tiny-random", "long_context", n, 1.0, 0, "memtok:4", steps=100)["flops"]
            for n in (20, 40)
        )
        * rate
        / 3600
    )
    assert f"in all: about {0.3 * hours:.0f}-{hours:.0f} single-core hours" in printed
    assert hours > 20, "the check needs hours the printout rounds to distinct integers"
    assert "memtok:4" in printed and "2 cells" in printed


def test_the_price_leaves_out_cells_a_shared_sweep_finished(tmp_path, tiny_sweep, capsys):
    """``--share-cells-with``: a cell the other sweep finished is copied, so it costs nothing."""
    import json

    from collect.config import config_from_dict
    from collect.sweep import run_sweep

    long = {"tasks": ["long_context"], "random_ratios": [1.0], "ranks": [1]}
    ours = tiny_sweep(name="ours", grid=[{**long, "lengths": [20, 40]}])
    theirs = tiny_sweep(name="theirs", grid=[{**long, "lengths": [20]}])
    done = run_sweep(
        config_from_dict(theirs), tmp_path / "theirs", progress=False, merge_to=tmp_path / "t.nc"
    )
    run_sweep(config_from_dict(ours), tmp_path / "ours", progress=False, only=[])
    sweep = tmp_path / "ours.json"
    sweep.write_text(json.dumps(ours))
    mod = _price_module()
    mod.price_sweep(done, str(sweep), str(tmp_path / "ours"), 100, [str(tmp_path / "theirs")])
    printed = capsys.readouterr().out
    assert "1 of 2 cells pending" in printed
    assert f"1 more pending cell(s) finished in {tmp_path / 'theirs'}: copied, free" in printed
    assert "lengths [40], 1 cells" in printed
