"""The surprise colour scale: the differences the lab asks about are visible,
in colour and in greyscale (CIE lightness L*, computed here from sRGB)."""

from __future__ import annotations

import pytest

from lmdesk.ui import theme


def lightness(rgb: tuple[int, int, int]) -> float:
    """CIE L* of an sRGB colour (D65), 0 … 100."""
    lin = [((v / 255 + 0.055) / 1.055) ** 2.4 if v / 255 > 0.04045 else v / 255 / 12.92 for v in rgb]
    y = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    return 116 * y ** (1 / 3) - 16 if y > 216 / 24389 else 24389 / 27 * y


def test_lightness_grows_with_surprise_so_greyscale_reads_it() -> None:
    steps = [i / 10 for i in range(0, 201)]  # 0 … 20 bits
    values = [lightness(theme.surprise_rgb(b)) for b in steps]
    assert all(b >= a - 0.05 for a, b in zip(values, values[1:]))  # (up to rounding to whole RGB values)
    assert values[-1] - values[0] > 70  # from near black to near white


@pytest.mark.parametrize("low, high, at_least", [
    (0.07, 3.3, 30),  # a near-certain token against an ordinary story word: far apart
    (0.5, 1.0, 6),  # below a coin flip against a coin flip
    (1.0, 2.0, 8),
    (3.0, 5.0, 8),
    (5.0, 10.0, 12),  # ... and the surprising ones still apart
])
def test_the_differences_the_lab_asks_about_are_visible(low: float, high: float, at_least: float) -> None:
    assert lightness(theme.surprise_rgb(high)) - lightness(theme.surprise_rgb(low)) >= at_least


def test_the_scale_and_its_inverse_agree_and_the_marks_are_in_order() -> None:
    for bits in (0.0, 0.3, 1.0, 2.58, 9.97, 16.0):
        assert theme.bits_at_position(theme.surprise_position(bits)) == pytest.approx(bits, abs=1e-9)
    positions = [theme.surprise_position(b) for b in theme.SCALE_MARKS]
    assert positions[0] == 0.0 and positions[-1] == 1.0 and positions == sorted(positions)
    assert theme.surprise_position(40.0) == 1.0 and theme.surprise_position(float("nan")) == 0.0


def test_the_plot_legend_names_the_marks(qtbot) -> None:
    from lmdesk.ui.surprise_plot import SurprisePlot

    plot = SurprisePlot()
    qtbot.addWidget(plot)
    html, plain = plot._legend_html(with_mean=False)
    assert plain.startswith("0█ 1█ 2█ 4█ 8█ 16+█") and plain.endswith("bits")
    assert theme.surprise_color(1.0).name() in html and theme.surprise_color(16.0).name() in html
