"""plot_compare: readable ticks, BLUPs that do not hide the posterior, a legend off the data."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from test_compare import fake_fit

from bayesmix import Spec, build_design
from bayesmix.compare import compare
from bayesmix.plots import plot_compare
from bayesmix.reml import fit_reml

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module", params=["dung", "sleepstudy"])
def figure(request):
    if request.param == "dung":
        d = pd.read_csv(DATA / "dung.csv")
        spec = Spec.from_formula("pr_dung ~ flies + (1 | oven_block)", d)
    else:
        d = pd.read_csv(DATA / "sleepstudy.csv")
        spec = Spec.from_formula("Reaction ~ Days + (Days | Subject)", d)
    design = build_design(spec, d)
    reml = fit_reml(design)
    fig = plot_compare(compare(fake_fit(design, reml), reml), dpi=80)
    FigureCanvasAgg(fig).draw()  # lay the figure out as savefig does
    return request.param, fig


def _forest_axes(fig):
    return [ax for ax in fig.axes if ax.get_ylabel() and not ax.get_yticks().size]


def test_tick_labels_do_not_overlap(figure):
    name, fig = figure
    renderer = fig.canvas.get_renderer()
    axes = _forest_axes(fig)
    assert any("flies" in ax.get_ylabel() for ax in axes) or name != "dung"
    for ax in fig.axes:
        boxes = [t.get_window_extent(renderer) for t in ax.get_xticklabels()
                 if t.get_visible() and t.get_text()]
        assert len(boxes) >= 2, ax.get_ylabel()
        for a, b in combinations(boxes, 2):
            assert not a.overlaps(b), (name, ax.get_ylabel() or ax.get_title(),
                                       [t.get_text() for t in ax.get_xticklabels()])


def test_small_coefficients_get_short_labels(figure):
    name, fig = figure
    if name != "dung":
        pytest.skip("the flies slope is the small one")
    (ax,) = [ax for ax in fig.axes if ax.get_ylabel() == "g10 (flies)"]
    labels = [t.get_text().removeprefix("$\\mathdefault{").removesuffix("}$")
              for t in ax.get_xticklabels() if t.get_text()]
    assert max(len(t) for t in labels) <= 5, labels  # e.g. "−8", with a ×10⁻⁵ offset
    assert ax.xaxis.get_offset_text().get_text()  # the shared power of ten is shown


def test_blups_do_not_hide_the_posterior_means(figure):
    _, fig = figure
    for ax in fig.axes:
        lines = {line.get_label(): line for line in ax.get_lines()}
        if "REML BLUP" not in lines:
            continue
        blup, post = lines["REML BLUP"], lines["posterior mean, 95% interval"]
        assert blup.get_markerfacecolor() == "none"  # hollow
        assert min(abs(a - b) for a, b in zip(blup.get_ydata(), post.get_ydata(),
                                              strict=True)) >= 0.25  # beside, not on top


def test_legend_covers_no_data(figure):
    _, fig = figure
    renderer = fig.canvas.get_renderer()
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    assert legends
    for legend in legends:
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            assert not box.overlaps(ax.get_window_extent(renderer)), ax.get_title()
