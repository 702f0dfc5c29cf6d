"""Colours, sizes and the surprise colour scale shared by every widget.

The surprise scale is *cividis*-like (dark blue → grey → yellow): it stays
readable for the common colour-vision deficiencies and in greyscale, and its
lightness grows with surprise, so a projector that washes colours out still
shows which tokens surprised the model.

Bits are placed on it by log2(1 + bits), not linearly: most tokens of a
story cost under 5 bits, and the differences the lab asks about (a near-sure
0.1 bit against a coin-flip 1 bit against 3 bits) would otherwise share the
first sixth of the scale's colours. On this scale 0–5 bits take its first
two-thirds; 16 bits and more take its last colour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PySide6.QtGui import QColor, QGuiApplication, QPalette

# bits at which the scale reaches its last colour; more surprise stays there
SCALE_MAX_BITS = 16.0
# the legend's marks: where the lab's reference points fall (a coin 1 bit, 1 in 1,000 ≈ 10 bits)
SCALE_MARKS = (0, 1, 2, 4, 8, 16)
_SCALE_LOG2 = math.log2(1.0 + SCALE_MAX_BITS)  # the scale's end: log2(1 + bits) of its last colour

# cividis, sampled at 9 points (public colormap data, Nuñez et al. 2018)
_CIVIDIS = [
    (0.000, (0, 34, 78)),
    (0.125, (35, 62, 108)),
    (0.250, (72, 86, 110)),
    (0.375, (103, 108, 112)),
    (0.500, (124, 123, 120)),
    (0.625, (155, 148, 119)),
    (0.750, (188, 175, 111)),
    (0.875, (223, 204, 91)),
    (1.000, (253, 234, 69)),
]


def surprise_position(bits: float) -> float:
    """Where ``bits`` of surprise sit on the colour scale, 0 … 1."""
    if not bits > 0:  # 0, negative rounding noise or NaN: the scale's start
        return 0.0
    return min(1.0, math.log2(1.0 + bits) / _SCALE_LOG2)


def surprise_positions(bits):
    """:func:`surprise_position` of each of an array of bits (finite values)."""
    import numpy as np

    return np.minimum(1.0, np.log2(1.0 + np.maximum(bits, 0.0)) / _SCALE_LOG2)


def bits_at_position(t: float) -> float:
    """The inverse of :func:`surprise_position`: the bits at fraction ``t`` of the scale."""
    return (1.0 + SCALE_MAX_BITS) ** max(0.0, min(1.0, t)) - 1.0


def surprise_rgb(bits: float) -> tuple[int, int, int]:
    """The scale's colour for ``bits`` of surprise."""
    t = surprise_position(bits)
    for (t0, c0), (t1, c1) in zip(_CIVIDIS, _CIVIDIS[1:]):
        if t <= t1:
            f = (t - t0) / (t1 - t0) if t1 > t0 else 0.0
            return tuple(round(a + (b - a) * f) for a, b in zip(c0, c1))  # type: ignore[return-value]
    return _CIVIDIS[-1][1]


def surprise_color(bits: float) -> QColor:
    return QColor(*surprise_rgb(bits))


def mix(a: QColor, b: QColor, t: float) -> QColor:
    """The opaque colour a fraction ``t`` of the way from ``a`` to ``b``."""
    t = max(0.0, min(1.0, t))
    return QColor(
        round(a.red() + (b.red() - a.red()) * t),
        round(a.green() + (b.green() - a.green()) * t),
        round(a.blue() + (b.blue() - a.blue()) * t),
    )


def apply_widget_palette(widget, theme: Theme) -> None:
    """The theme's window and text colours on ``widget``'s own palette."""
    pal = widget.palette()
    pal.setColor(widget.backgroundRole(), theme.window)
    pal.setColor(widget.foregroundRole(), theme.text)
    widget.setPalette(pal)


def text_on(color: QColor) -> QColor:
    """Black or white, whichever reads better on ``color``."""
    luminance = 0.2126 * color.redF() + 0.7152 * color.greenF() + 0.0722 * color.blueF()
    return QColor(0, 0, 0) if luminance > 0.45 else QColor(255, 255, 255)


@dataclass(frozen=True)
class Theme:
    name: str
    window: QColor
    text: QColor
    muted: QColor  # secondary text: ids, labels
    panel: QColor  # chip background of unscored tokens and chart backgrounds
    special_fill: QColor  # special tokens: dimmed
    special_outline: QColor
    selection: QColor
    highlight: QColor  # the actual token in a distribution; the clicked chip
    role_colors: dict[str, QColor]
    bar: QColor  # bars of the model's own distribution
    bar_sampled: QColor  # bars after temperature / top-k / top-p

    @property
    def dark(self) -> bool:
        return self.window.lightness() < 128


def _role_colors(dark: bool) -> dict[str, QColor]:
    if dark:
        return {"system": QColor("#b48ead"), "user": QColor("#88c0d0"), "assistant": QColor("#a3be8c"),
                "tool": QColor("#ebcb8b"), "text": QColor("#d8dee9")}
    return {"system": QColor("#7b3f8c"), "user": QColor("#1f5f99"), "assistant": QColor("#2e7d32"),
            "tool": QColor("#a0522d"), "text": QColor("#4c566a")}


LIGHT = Theme(
    "light", window=QColor("#fafafa"), text=QColor("#1b1b1b"), muted=QColor("#6b6b6b"), panel=QColor("#ececec"),
    special_fill=QColor("#e2e2e2"), special_outline=QColor("#8a8a8a"), selection=QColor(255, 140, 0, 90),
    highlight=QColor("#d35400"), role_colors=_role_colors(False), bar=QColor("#3b6ea8"),
    bar_sampled=QColor(211, 84, 0, 150),
)
DARK = Theme(
    "dark", window=QColor("#1f2329"), text=QColor("#eceff4"), muted=QColor("#a0a7b4"), panel=QColor("#2e3440"),
    special_fill=QColor("#3b4252"), special_outline=QColor("#8f98a8"), selection=QColor(255, 170, 60, 90),
    highlight=QColor("#ffb347"), role_colors=_role_colors(True), bar=QColor("#6fa8dc"),
    bar_sampled=QColor(255, 179, 71, 150),
)
HIGH_CONTRAST = Theme(
    "high contrast", window=QColor("#000000"), text=QColor("#ffffff"), muted=QColor("#e0e0e0"),
    panel=QColor("#1a1a1a"), special_fill=QColor("#000000"), special_outline=QColor("#ffffff"),
    selection=QColor(255, 255, 0, 110), highlight=QColor("#ffff00"),
    role_colors={"system": QColor("#ff80ff"), "user": QColor("#80ffff"), "assistant": QColor("#80ff80"),
                 "tool": QColor("#ffc040"), "text": QColor("#ffffff")},
    bar=QColor("#80ffff"), bar_sampled=QColor(255, 255, 0, 170),
)


def system_theme() -> Theme:
    """Light or dark, as the desktop is."""
    app = QGuiApplication.instance()
    if app is not None:
        hints = QGuiApplication.styleHints()
        scheme = getattr(hints, "colorScheme", None)
        if scheme is not None:
            from PySide6.QtCore import Qt

            if scheme() == Qt.ColorScheme.Dark:
                return DARK
            if scheme() == Qt.ColorScheme.Light:
                return LIGHT
        if QGuiApplication.palette().color(QPalette.ColorRole.Window).lightness() < 128:
            return DARK
    return LIGHT


def palette_for(theme: Theme) -> QPalette:
    """A Qt palette so standard widgets follow the theme."""
    p = QPalette()
    p.setColor(QPalette.ColorRole.Window, theme.window)
    p.setColor(QPalette.ColorRole.WindowText, theme.text)
    p.setColor(QPalette.ColorRole.Base, theme.window.lighter(105) if theme.dark else QColor("#ffffff"))
    p.setColor(QPalette.ColorRole.AlternateBase, theme.panel)
    p.setColor(QPalette.ColorRole.Text, theme.text)
    p.setColor(QPalette.ColorRole.Button, theme.panel)
    p.setColor(QPalette.ColorRole.ButtonText, theme.text)
    p.setColor(QPalette.ColorRole.Highlight, theme.highlight)
    p.setColor(QPalette.ColorRole.HighlightedText, text_on(theme.highlight))
    p.setColor(QPalette.ColorRole.ToolTipBase, theme.panel)
    p.setColor(QPalette.ColorRole.ToolTipText, theme.text)
    p.setColor(QPalette.ColorRole.PlaceholderText, theme.muted)
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        p.setColor(QPalette.ColorGroup.Disabled, role, theme.muted)
    return p


def contrast_style_sheet(theme: Theme) -> str:
    """Borders for inputs and check boxes, in the theme's text colour (for
    High contrast, where the style's own shade of the black window is black)."""
    text, high, window = theme.text.name(), theme.highlight.name(), theme.window.name()
    return (
        f"QAbstractSpinBox, QLineEdit, QPlainTextEdit, QComboBox {{ border: 2px solid {text}; border-radius: 3px; "
        f"background: {window}; color: {text}; padding: 1px 3px; }}"
        f"QAbstractSpinBox:focus, QLineEdit:focus, QPlainTextEdit:focus {{ border-color: {high}; }}"
        f"QCheckBox::indicator {{ width: 0.9em; height: 0.9em; border: 2px solid {text}; background: {window}; }}"
        f"QCheckBox::indicator:checked {{ background: {high}; }}"
        f"QPushButton {{ border: 2px solid {text}; border-radius: 3px; padding: 3px 8px; background: {window}; "
        f"color: {text}; }}"
        f"QPushButton:disabled {{ border-color: {theme.muted.name()}; color: {theme.muted.name()}; }}"
        f"QPushButton:pressed, QPushButton:checked {{ background: {high}; color: {window}; }}"
    )
