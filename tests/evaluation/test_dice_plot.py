"""The evaluation plot says what it shows: axis labels, the model, and a legend even for many structures."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from napari_openmedlab.evaluation import runner


def _rows(n_classes: int, n_clicks: int = 5, model: str = "seeded-region"):
    rng = np.random.default_rng(0)
    fields = {f.name for f in dataclasses.fields(runner.ClickResult)}
    rows = []
    for c in range(1, n_classes + 1):
        for k in range(1, n_clicks + 1):
            values = dict(case="ct", class_id=c, class_name=f"organ_{c}", click=k, z=1, y=2, x=3,
                          positive=True, dice=float(rng.uniform(0.2, 0.9)), nsd=0.5, seconds=0.1,
                          setup_seconds=0.0, protocol="largest-error", model=model, gt_voxels=100)
            rows.append(runner.ClickResult(**{k2: v for k2, v in values.items() if k2 in fields}))
    return rows


@pytest.mark.parametrize("n_classes", [3, 41])
def test_the_plot_has_labels_a_legend_and_the_model(n_classes, tmp_path):
    fig = runner.dice_figure(_rows(n_classes))
    ax = fig.axes[0]
    assert "clicks" in ax.get_xlabel() and "Dice" in ax.get_ylabel()
    assert "seeded-region" in ax.get_title()
    legend = ax.get_legend()
    assert legend is not None
    texts = [t.get_text() for t in legend.get_texts()]
    assert f"mean over {n_classes} structures" in texts
    if n_classes <= 12:
        assert {f"organ_{c}" for c in range(1, n_classes + 1)} <= set(texts)
    else:  # one grey family plus the best and the worst, not 41 unreadable entries
        assert len(texts) <= 5 and any("best" in t for t in texts) and any("worst" in t for t in texts)
    path = runner.plot_dice(_rows(n_classes), tmp_path / "dice.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.iterdir() if p.name != "dice.png"]  # no temporary left behind
