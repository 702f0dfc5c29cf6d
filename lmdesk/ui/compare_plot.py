"""The picture of ``lmdesk compare --plot``: perplexity and bits per character against the models.

Two panels side by side, perplexity per token on the left and bits per
character on the right, the models along the bottom (smallest first when
every folder tells its size, else in the order given), one line per text so
that a class's stories can be read together. Drawn with QPainter on a
QImage: it needs only a QGuiApplication, started offscreen here when the
command line has none, and no window.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QGuiApplication, QImage, QPainter, QPen

from ..engine import export
from ..engine.compare import size_label

__all__ = ["write_plot", "render_plot", "nice_ticks", "SIZE"]

SIZE = (1200, 700)
# Okabe & Ito's colours, told apart by colour-blind eyes; the markers differ too
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
LEGEND_ROWS = 8
_app: QGuiApplication | None = None


def _ensure_app() -> None:
    """A QGuiApplication for the fonts, offscreen when none is running."""
    global _app
    if QGuiApplication.instance() is None:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        _app = QGuiApplication(["lmdesk"])
        from .fonts import install_fallback_fonts

        install_fallback_fonts()


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """Round values 0, step, 2·step … covering 0 … ``top`` (steps of 1, 2 or 5 × 10^k)."""
    if not math.isfinite(top) or top <= 0:
        return [0.0, 1.0]
    raw = top / count
    base = 10 ** math.floor(math.log10(raw))
    step = next(m * base for m in (1, 2, 5, 10) if m * base >= raw)
    n = math.ceil(top / step - 1e-9)
    return [i * step for i in range(n + 1)]


def _panel(p: QPainter, rect: QRectF, title: str, labels: Sequence[str],
           series: Sequence[tuple[str, Sequence[float]]], font: QFont) -> None:
    """One chart: axes, ticks, the models' labels and a line per text."""
    p.setFont(font)
    metrics_h = font.pixelSize() * 1.4
    p.setPen(QColor("#202020"))
    bold = QFont(font)
    bold.setBold(True)
    p.setFont(bold)
    p.drawText(QRectF(rect.left(), rect.top(), rect.width(), metrics_h), Qt.AlignmentFlag.AlignCenter, title)
    p.setFont(font)
    plot = QRectF(rect.left() + 70, rect.top() + metrics_h * 1.5, rect.width() - 90,
                  rect.height() - metrics_h * 1.5 - metrics_h * 3.2)
    values = [v for _, vs in series for v in vs if math.isfinite(v)]
    ticks = nice_ticks(max(values, default=1.0) * 1.05)
    top = ticks[-1] or 1.0

    def y_of(v: float) -> float:
        return plot.bottom() - plot.height() * v / top

    n = len(labels)

    def x_of(i: int) -> float:
        return plot.left() + plot.width() * (i + 0.5) / max(n, 1)

    grid = QPen(QColor("#d8d8d8"))
    for t in ticks:
        y = y_of(t)
        p.setPen(grid)
        p.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
        p.setPen(QColor("#404040"))
        p.drawText(QRectF(rect.left(), y - metrics_h / 2, 62, metrics_h),
                   Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, f"{t:g}")
    p.setPen(QPen(QColor("#202020"), 1.5))
    p.drawLine(plot.bottomLeft(), plot.bottomRight())
    p.drawLine(plot.bottomLeft(), plot.topLeft())
    slot = plot.width() / max(n, 1)
    for i, label in enumerate(labels):
        p.drawText(QRectF(x_of(i) - slot / 2 + 4, plot.bottom() + 6, slot - 8, metrics_h * 3),
                   Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop | Qt.TextFlag.TextWordWrap, label)
    for k, (_name, vs) in enumerate(series):
        colour = QColor(PALETTE[k % len(PALETTE)])
        p.setPen(QPen(colour, 2.5))
        points = [QPointF(x_of(i), y_of(v)) for i, v in enumerate(vs) if math.isfinite(v)]
        for a, b in zip(points, points[1:]):
            p.drawLine(a, b)
        p.setBrush(colour)
        for pt in points:
            _marker(p, pt, k)
        p.setBrush(Qt.BrushStyle.NoBrush)
    if len(series) == 1:  # one text: the values themselves, above their points
        p.setPen(QColor("#202020"))
        for i, v in enumerate(series[0][1]):
            if math.isfinite(v):
                p.drawText(QRectF(x_of(i) - slot / 2, y_of(v) - metrics_h * 1.6, slot, metrics_h),
                           Qt.AlignmentFlag.AlignCenter, f"{v:.3g}")


def _marker(p: QPainter, at: QPointF, k: int) -> None:
    """A filled circle, square or diamond, by the text's place in the legend."""
    r = 6.0
    shape = k % 3
    if shape == 0:
        p.drawEllipse(at, r, r)
    elif shape == 1:
        p.drawRect(QRectF(at.x() - r, at.y() - r, 2 * r, 2 * r))
    else:
        p.drawPolygon([QPointF(at.x(), at.y() - r * 1.3), QPointF(at.x() + r * 1.3, at.y()),
                       QPointF(at.x(), at.y() + r * 1.3), QPointF(at.x() - r * 1.3, at.y())])


def _order(models: Sequence[str], parameters: Sequence[int | None]) -> list[int]:
    """Smallest model first when every size is known, else as given."""
    if parameters and all(n is not None for n in parameters):
        return sorted(range(len(models)), key=lambda i: (parameters[i], i))
    return list(range(len(models)))


def render_plot(models: Sequence[str], parameters: Sequence[int | None],
                series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
                size: tuple[int, int] = SIZE) -> QImage:
    """The picture: ``series`` maps each text's name to (perplexities,
    bits per character), one value per model in the order of ``models``."""
    _ensure_app()
    order = _order(models, parameters)
    labels = [models[i] + (f"\n{size_label(parameters[i])} parameters" if parameters[i] is not None else "") for i in order]
    ppl = [(name, [vals[0][i] for i in order]) for name, vals in series.items()]
    bpc = [(name, [vals[1][i] for i in order]) for name, vals in series.items()]
    width, height = size
    image = QImage(width, height, QImage.Format.Format_RGB32)
    image.fill(QColor("white"))
    p = QPainter(image)
    try:
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        font = QFont()
        font.setPixelSize(max(11, height // 48))
        shown = list(series)[:LEGEND_ROWS]
        legend_h = (font.pixelSize() * 1.5) * ((len(shown) + 1) // 2 + (1 if len(series) > LEGEND_ROWS else 0)) + 16
        body = QRectF(10, 10, width - 20, height - 20 - legend_h)
        half = body.width() / 2
        _panel(p, QRectF(body.left(), body.top(), half - 10, body.height()), "Perplexity per token (lower: less surprised)",
               labels, ppl, font)
        _panel(p, QRectF(body.left() + half + 10, body.top(), half - 10, body.height()),
               "Bits per character (fair across tokenizers)", labels, bpc, font)
        p.setFont(font)
        row_h = font.pixelSize() * 1.5
        for k, name in enumerate(shown):
            x = 40 + (k % 2) * (width / 2)
            y = body.bottom() + 10 + (k // 2) * row_h
            colour = QColor(PALETTE[k % len(PALETTE)])
            p.setPen(QPen(colour, 2.5))
            p.setBrush(colour)
            p.drawLine(QPointF(x, y + row_h / 2), QPointF(x + 30, y + row_h / 2))
            _marker(p, QPointF(x + 15, y + row_h / 2), k)
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.setPen(QColor("#202020"))
            p.drawText(QRectF(x + 40, y, width / 2 - 90, row_h), Qt.AlignmentFlag.AlignVCenter, name)
        if len(series) > LEGEND_ROWS:
            p.drawText(QRectF(40, body.bottom() + 10 + ((len(shown) + 1) // 2) * row_h, width - 80, row_h),
                       Qt.AlignmentFlag.AlignVCenter, f"… and {len(series) - LEGEND_ROWS} more texts")
    finally:
        p.end()
    return image


def write_plot(path: Path | str, models: Sequence[str], parameters: Sequence[int | None],
               series: Mapping[str, tuple[Sequence[float], Sequence[float]]], size: tuple[int, int] = SIZE) -> Path:
    """Draw :func:`render_plot` and write it to ``path`` as PNG, all or nothing
    (:func:`lmdesk.engine.export.write_file`: one sentence on failure)."""
    image = render_plot(models, parameters, series, size)
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not image.save(buffer, "PNG"):
        raise export.ExportError(f"The plot could not be drawn as PNG for {path}.")
    buffer.close()
    return export.write_file(path, bytes(data.data()), what="The plot")
