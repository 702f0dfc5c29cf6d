"""The explorer window: the conversation as token chips, the live next-token
distribution, and the model's surprise in bits.

The window renders :class:`EngineState` snapshots from the worker and turns
clicks into requests; it does no model work itself.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import math
import re
import time
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QFont, QKeySequence, QLinearGradient, QPainter, QShortcut
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QTabWidget,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from .. import __version__
from ..engine import conversation_file
from ..engine.conversation_file import SUFFIX
from ..engine.document import Document, ranked, reply_positions
from ..engine.errors import LmdeskError
from ..engine.sampling import SEED_LIMIT, SamplingSettings
from ..engine.stats import summarize
from ..engine.token_text import TokenTextTable
from . import export_actions
from .intents import ALL as INTENTS
from .intents import (
    AddToolCall, AddToolResult, AppendToken, ApplyConversation, CloseSecond, Compare, EndTurn, ExplainAt, ExplainNext,
    Generate,
    Inspect, LoadSecond, SetTools, ShowConversation, ImportGguf, Intent, LoadModel, LoadText, NewConversation, OpenConversation,
    PrepareDefault, Replace, ReplaceText, ResetResponse, SaveConversation, SetK, SetSettings, SetSystemPrompt, Step,
    Undo, UseFamilyTemplate,
)
from . import theme as themes
from .distribution_view import DistributionView
from .document_view import DocumentView, format_prob
from .inside_view import InsideView
from .sampling_view import SamplingView
from .surprise_plot import SurprisePlot
from .compare_view import CompareView
from .conversation_panel import ConversationJsonDialog, ToolsPanel
from .worker import Compared, EngineClient, EngineState, Inspected, ModelInfo, SamplingShown, ToolsState

BASE_POINT_SIZE = 10.0
def reference_points(s) -> str:
    """The bits beside things everyone knows, and perplexity with its base."""
    nats = s.bits_per_token * math.log(2)
    return (f"perplexity {s.perplexity:,.2f} = 2<sup>{s.bits_per_token:.2f}</sup> (bits a token) = "
            f"e<sup>{nats:.2f}</sup> (nats a token) · for scale: a fair coin is 1 bit, a die 2.58 bits, "
            "1 chance in 1,000 about 10 bits")


SPAN_HINT = "Click a token to see what the model predicted there; drag over tokens to measure a span."

log = logging.getLogger(__name__)

DEFAULT_TEMPERATURE, DEFAULT_TOP_P = 0.7, 0.9  # Generate's settings until a student changes them
PROJECTOR_ZOOM = 1.3  # text size in projector mode (and what Ctrl+0 goes back to there)
FRAME_S = 1 / 30  # the shortest time between two drawings of the document while the model writes
SLOW_PARTS_S = 0.5  # ... and of the surprise plot and the chart, which redraw everything they show
# the wait before each part drawn in a turn of its own (_draw_later): a turn comes after the
# painting of what was drawn before it and after what came meanwhile (a key, a click, a timer
# due by then). With 1 ms, the plot followed the chips' painting at once, and with a core busy
# elsewhere the two held the window up 70 ms together
LATER_MS = 15
PLOT, CHART = frozenset({"plot"}), frozenset({"chart"})
BOTH = PLOT | CHART
CHIPS = frozenset({"chips"})  # the rest of the chips of a long new stretch (MainWindow.chips_per_turn)


class SurpriseLegend(QWidget):
    """The colour scale of the chips, with its meaning."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.zoom = 1.0
        self.theme = themes.LIGHT
        self.setToolTip(
            "Each token is coloured by how surprised the model was to see it: −log2 p, in bits.\n"
            "0 bits: the model was sure of it. 1 bit: a coin flip. 10 bits: about 1 in 1,000."
        )

    def set_zoom(self, zoom: float) -> None:
        self.zoom = zoom
        self.updateGeometry()
        self.update()

    def set_theme(self, theme: themes.Theme) -> None:
        self.theme = theme
        self.update()

    def sizeHint(self):  # noqa: N802 - Qt's name
        from PySide6.QtCore import QSize

        return QSize(int(360 * self.zoom), int(34 * self.zoom))

    def paintEvent(self, event) -> None:  # noqa: N802
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        font = QFont(self.font())
        font.setPointSizeF(BASE_POINT_SIZE * 0.85 * self.zoom)
        p.setFont(font)
        fm = p.fontMetrics()
        label = "surprise (bits)"
        x0 = fm.horizontalAdvance(label) + int(8 * self.zoom)
        p.setPen(self.theme.text)
        p.drawText(0, 0, x0, self.height() // 2 + fm.ascent() // 2, Qt.AlignmentFlag.AlignLeft, label)
        w = max(40, self.width() - x0 - int(30 * self.zoom))
        h = int(12 * self.zoom)
        grad = QLinearGradient(x0, 0, x0 + w, 0)
        for i in range(33):
            grad.setColorAt(i / 32, themes.surprise_color(themes.bits_at_position(i / 32)))
        p.fillRect(x0, 2, w, h, grad)
        top = themes.SCALE_MARKS[-1]
        marks = themes.SCALE_MARKS if w > fm.horizontalAdvance("16+") * 9 else (0, 2, top)
        for bits in marks:
            x = x0 + int(w * themes.surprise_position(bits))
            text = f"{bits:g}+" if bits == top else f"{bits:g}"
            p.drawText(x - fm.horizontalAdvance(text) // 2, h + 4 + fm.ascent(), text)


class MessageBox(QPlainTextEdit):
    """The user's message; Ctrl+Enter ends the turn."""

    submitted = Signal()

    def keyPressEvent(self, event) -> None:  # noqa: N802
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.submitted.emit()
            return
        super().keyPressEvent(event)


class MainWindow(QMainWindow):
    stateShown = Signal(object)  # an EngineState, after the window has drawn it (UI thread)

    def __init__(self, *, model_folder: str | None = None, threads: int | None = None,
                 client: EngineClient | None = None, keep_last: Path | None = None,
                 chat_template: str | None = None) -> None:
        super().__init__()
        # where the document is kept when the window closes (the app passes a
        # file in the user's data folder; tests and tools pass nothing)
        self.keep_last = keep_last
        self.setWindowTitle(f"lmdesk {__version__}")
        self.client = client or EngineClient(self)
        self.state = EngineState()
        self.info: ModelInfo | None = None
        self.texts: TokenTextTable | None = None
        self.busy = False
        self.zoom = 1.0
        self.theme = themes.system_theme()
        self.desktop_theme = self.theme  # read once: after High contrast the app's palette is ours, not the desktop's
        self.position: int | None = None  # the clicked chip whose distribution is shown; None: the end
        self.span: tuple[int, int] | None = None
        self._closing = False
        self._last_progress = ""
        self._progress_shown = 0.0
        self._unsent: str | None = None  # a message sent that the model has not read yet
        self._busy_with = ""  # the request the worker is on
        # states arrive as fast as the model writes (50 a second and more); the window draws
        # the newest of them at most once a frame, and never spends more than a third of its
        # time drawing, so keys, clicks and Stop are answered while the model works
        self._pending: EngineState | None = None
        self._pending_first = 0
        self._next_draw = 0.0
        self._last_slow_draw = 0.0
        self._next_slow_part = "plot"  # while the model writes, the plot and the chart take turns
        self._partly_drawn = False  # the state on screen was drawn without the plot and the chart
        self._plot_first = 0  # the plot is drawn less often: the first position it has not drawn since
        # the plot's value of every token (its bits, None where it has none or is out of scope),
        # kept up from each drawn state's first changed position: making it anew from 8,000
        # tokens took 3 ms every time the plot or the figures under the document were drawn
        self._plot_values: list[float | None] = []
        self._plot_in_conversation = False
        self._chips_shown = 0  # the document view shows the first this many chips of the state
        self._sampling: SamplingShown | None = None  # what the Sampling tab shows
        self._sampling_asked: tuple[int, int | None] | None = None  # (revision, position) it last asked about
        self._inside_asked: tuple[int, int] | None = None  # (revision, position) the Inside tab last asked about
        self._draw_timer = QTimer(self)
        self._draw_timer.setSingleShot(True)
        self._draw_timer.timeout.connect(self.draw_pending)
        self._later: frozenset[str] = frozenset()  # parts of the state on screen still to be drawn
        self._fresh_next: EngineState | None = None  # the newest state received with a distribution, not yet charted
        self._later_timer = QTimer(self)
        self._later_timer.setSingleShot(True)
        self._later_timer.timeout.connect(self._draw_next_later)
        self._build()
        self._connect()
        self.apply_theme(self.theme)
        self._set_enabled()
        self.fit_screen()
        self.client.send(LoadModel(model_folder, threads, chat_template))

    # -- building ---------------------------------------------------------------------------
    def _build(self) -> None:
        # left: the conversation and the controls
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(6, 6, 6, 6)
        self.model_label = QLabel("Loading the model…")
        self.model_label.setWordWrap(True)
        lv.addWidget(self.model_label)
        # a model whose file has no chat template: its family's format, one click away
        self.template_button = QPushButton("")
        self.template_button.setVisible(False)
        lv.addWidget(self.template_button)

        srow = QHBoxLayout()
        srow.addWidget(QLabel("System prompt"), 1)
        self.apply_system = QPushButton("Apply")
        self.apply_system.setToolTip("Rewrite the system message of this conversation; everything after it is recomputed.")
        srow.addWidget(self.apply_system)
        lv.addLayout(srow)
        self.system_edit = QPlainTextEdit()
        self.system_edit.setPlaceholderText("How the assistant should behave (empty: no system message)")
        self.system_edit.setMaximumHeight(90)
        lv.addWidget(self.system_edit)

        lv.addWidget(QLabel("Your message"))
        self.message = MessageBox()
        self.message.setPlaceholderText("Type a message, then End Turn (Ctrl+Enter)")
        lv.addWidget(self.message, 1)
        self.end_turn = QPushButton("End Turn")
        # clicking it leaves the keyboard in the message box (a button that took focus and was
        # then disabled while the model works would hand it on to Temperature, text selected)
        self.end_turn.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.end_turn.setToolTip("Add your message and the markers that open the assistant's reply (Ctrl+Enter)")
        self.new_conv = QPushButton("New conversation")
        lv.addWidget(self.end_turn)
        self.tools_panel = ToolsPanel()
        lv.addWidget(self.tools_panel)
        self.json_dialog = ConversationJsonDialog(self)
        self._json_asked = False  # the JSON window waits for the conversation it asked for

        # the model writes: a toolbar, which folds what does not fit into a menu
        self.generate = QPushButton("Generate response")
        self.generate.setToolTip("Let the model write its reply, token by token, with the sampling settings")
        self.stop = QPushButton("Stop")
        self.stop.setToolTip("Stop the model between two tokens")
        self.greedy_step = QPushButton("Greedy step")
        self.greedy_step.setToolTip("Append the model's most likely next token")
        self.sample_step = QPushButton("Sample one token")
        self.sample_step.setToolTip("Draw one token with the sampling settings")
        self.undo = QPushButton("Undo")
        self.undo.setToolTip("Take back the last change (Ctrl+Z)")
        self.reset_response = QPushButton("Reset response")
        self.reset_response.setToolTip("Remove the assistant's reply so far")
        tools = QToolBar("The model writes")
        tools.setObjectName("model-writes")
        tools.setMovable(False)
        for b in (self.generate, self.stop, self.greedy_step, self.sample_step, self.undo, self.reset_response,
                  self.new_conv):
            tools.addWidget(b)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, tools)

        sampling = QGroupBox("Sampling")
        form = QFormLayout(sampling)
        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(0.0, 3.0)
        self.temperature.setSingleStep(0.1)
        # a story a student can read from a 135M model: at temperature 1 it drifts into word
        # salad (SmolLM2, 5 seeds × 80 tokens: 4.04 bits a token of its own surprise); at 0.7
        # with top-p 0.9, 1.73, with no repeated three-token run (0.5: 1.42, but 5 % repeats)
        self.temperature.setValue(DEFAULT_TEMPERATURE)
        self.temperature.setToolTip("0 = always the most likely token (greedy)")
        self.top_k = QSpinBox()
        self.top_k.setRange(0, 1000)
        self.top_k.setSpecialValueText("off")
        self.top_p = QDoubleSpinBox()
        self.top_p.setRange(0.01, 1.0)
        self.top_p.setSingleStep(0.05)
        self.top_p.setValue(DEFAULT_TOP_P)
        seed_row = QHBoxLayout()
        self.seed = QSpinBox()
        self.seed.setRange(0, SEED_LIMIT - 1)
        self.seed.setValue(42)
        self.fixed_seed = QCheckBox("fixed")
        self.fixed_seed.setToolTip("The same seed and settings give the same text")
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(self.fixed_seed)
        self.max_tokens = QSpinBox()
        self.max_tokens.setRange(1, 4096)
        self.max_tokens.setValue(200)
        form.addRow("Temperature", self.temperature)
        form.addRow("Top-k", self.top_k)
        form.addRow("Top-p", self.top_p)
        form.addRow("Seed", seed_row)
        form.addRow("Max tokens", self.max_tokens)
        lv.addWidget(sampling)

        # centre: the document, the legend, the span summary and the surprise plot
        centre = QWidget()
        cv = QVBoxLayout(centre)
        cv.setContentsMargins(0, 0, 0, 0)
        self.banner = QLabel()
        self.banner.setWordWrap(True)
        self.banner.setVisible(False)
        self.banner.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.banner.setFrameShape(QFrame.Shape.StyledPanel)
        cv.addWidget(self.banner)
        self.missing = self._build_missing_panel()
        cv.addWidget(self.missing)
        self.doc_view = DocumentView()
        self.legend = SurpriseLegend()
        self.span_label = QLabel(SPAN_HINT)
        self.span_label.setWordWrap(True)
        self.surprise = SurprisePlot()
        vsplit = QSplitter(Qt.Orientation.Vertical)
        top = QWidget()
        tv = QVBoxLayout(top)
        tv.setContentsMargins(0, 0, 0, 0)
        tv.addWidget(self.doc_view, 1)
        lrow = QHBoxLayout()
        lrow.addWidget(self.legend, 1)
        tv.addLayout(lrow)
        tv.addWidget(self.span_label)
        # the lab's questions, answered with a click: where was the model most surprised, ...
        self.find_row = frow = QHBoxLayout()
        lead = QLabel("Most")
        lead.setToolTip("Go to the most surprising, most confident or most uncertain token; click again for the next")
        lead.setMinimumWidth(20)
        frow.addWidget(lead)
        self.find_buttons = {}
        for find, tip in (
                ("surprising", "The token the model expected least (the most bits); again for the next"),
                ("confident", "The token the model was surest of (the fewest bits); again for the next"),
                ("uncertain", "Where the model was least sure what comes (the highest entropy); again for the next")):
            button = QPushButton(find)
            button.setToolTip(tip)
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            button.setMinimumWidth(30)  # their own width when there is room; on a narrow screen the row gives way
            self.find_buttons[find] = button
            frow.addWidget(button)
        frow.addWidget(QLabel("in"))
        self.scope = QComboBox()
        self.scope.addItems(["all tokens", "the replies"])
        self.scope.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.scope.setMinimumContentsLength(len("the replies"))
        self.scope.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Fixed)
        self.scope.setToolTip("The replies: the assistant's words only, so the system prompt and your messages "
                              "do not fill the plot, the figures and the lists")
        frow.addWidget(self.scope)
        frow.addStretch(1)
        tv.addLayout(frow)
        self._found: tuple[str, int] | None = None  # the last question asked and how far down its list
        vsplit.addWidget(top)
        vsplit.addWidget(self.surprise)
        vsplit.setStretchFactor(0, 3)
        vsplit.setStretchFactor(1, 1)
        cv.addWidget(vsplit, 1)

        # right: the distribution and the force box
        right = QWidget()
        rv = QVBoxLayout(right)
        rv.setContentsMargins(6, 6, 6, 6)
        self.dist_title = QLabel("Next token")
        self.dist_title.setWordWrap(True)
        rv.addWidget(self.dist_title)
        self.dist = DistributionView()
        rv.addWidget(self.dist, 1)
        krow = QHBoxLayout()
        krow.addWidget(QLabel("Candidates shown"))
        self.k_spin = QSpinBox()
        self.k_spin.setRange(3, 50)
        self.k_spin.setValue(15)
        krow.addWidget(self.k_spin)
        self.back_to_end = QPushButton("Back to the end")
        self.back_to_end.setToolTip("Show the distribution of the next token again (Esc)")
        krow.addWidget(self.back_to_end)
        rv.addLayout(krow)
        frow = QHBoxLayout()
        self.force_edit = QLineEdit()
        self.force_edit.setPlaceholderText("Any text to force here, e.g. ' London'")
        self.force = QPushButton("Force")
        self.force.setToolTip("Put these tokens here, however unlikely the model finds them")
        frow.addWidget(self.force_edit, 1)
        frow.addWidget(self.force)
        rv.addLayout(frow)

        self.left_panel = left
        left_scroll = QScrollArea()
        left_scroll.setWidget(left)
        left_scroll.setWidgetResizable(True)
        left_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        left_scroll.setFrameShape(QFrame.Shape.NoFrame)
        left_scroll.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # a click on a button in it keeps the keyboard where it was
        self.split = split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left_scroll)
        split.addWidget(centre)
        # the right-hand side: the next token's chart, and how the next token is chosen
        self.right_tabs = QTabWidget()
        self.right_tabs.addTab(right, "Next token")
        self.sampling_view = SamplingView()
        self._sampling_page = sampling_page = QScrollArea()  # at projector sizes the page scrolls
        sampling_page.setWidgetResizable(True)
        sampling_page.setFrameShape(QFrame.Shape.NoFrame)
        sampling_page.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        sampling_inner = QWidget()
        sv = QVBoxLayout(sampling_inner)
        sv.setContentsMargins(6, 6, 6, 6)
        sv.addWidget(self.sampling_view)
        sampling_page.setWidget(sampling_inner)
        self.right_tabs.addTab(sampling_page, "Sampling")
        self.right_tabs.setTabToolTip(1, "How the next token is chosen: logits, temperature, top-k, top-p, "
                                         "and the random number that picked it")
        self.inside_view = InsideView()
        inside_page = QScrollArea()
        inside_page.setWidgetResizable(True)
        inside_page.setFrameShape(QFrame.Shape.NoFrame)
        inside_page.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # the lens grid scrolls itself
        inside_inner = QWidget()
        iv = QVBoxLayout(inside_inner)
        iv.setContentsMargins(6, 6, 6, 6)
        iv.addWidget(self.inside_view)
        inside_page.setWidget(inside_inner)
        self._inside_page = inside_page
        self.right_tabs.addTab(inside_page, "Inside")
        self.right_tabs.setTabToolTip(2, "Inside the model at the clicked token: the logit lens layer by layer, "
                                         "and the attention to the tokens before it")
        split.addWidget(self.right_tabs)
        # the compare view lives in a window of its own, opened from the View menu
        self.compare_view = CompareView()
        self.compare_window = QMainWindow(self)
        self.compare_window.setWindowTitle("Compare two models — lmdesk")
        self.compare_window.setCentralWidget(self.compare_view)
        self.compare_window.resize(1100, 700)
        self._second_name: str | None = None
        self._second_folder: str | None = None
        self._compare_error = ""  # why loading or scoring with the second model failed, said in its window
        self._compared: Compared | None = None
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 3)
        split.setStretchFactor(2, 2)
        split.setSizes([left.minimumSizeHint().width() + 20, 640, 370])
        self.setCentralWidget(split)

        bar = self.statusBar()
        self.status = QLabel("")
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(260)
        self.progress.setVisible(False)
        self.cancel = QPushButton("Cancel")
        self.cancel.setVisible(False)
        bar.addWidget(self.status, 1)
        bar.addPermanentWidget(self.progress)
        bar.addPermanentWidget(self.cancel)
        self._build_menus()

    def _build_missing_panel(self) -> QWidget:
        panel = QFrame()
        panel.setFrameShape(QFrame.Shape.StyledPanel)
        v = QVBoxLayout(panel)
        self.missing_text = QLabel()
        self.missing_text.setWordWrap(True)
        v.addWidget(self.missing_text)
        row = QHBoxLayout()
        self.prepare_button = QPushButton("Prepare the default model")
        self.import_button = QPushButton("Open a GGUF model file…")
        self.open_button = QPushButton("Open a model folder…")
        for b in (self.prepare_button, self.import_button, self.open_button):
            row.addWidget(b)
        v.addLayout(row)
        panel.setVisible(False)
        return panel

    def _build_menus(self) -> None:
        m = self.menuBar().addMenu("&File")
        self.act_import = QAction("Open model…", self)
        self.act_import.setToolTip("A GGUF file (imported once, then opened from its folder), "
                                   "or the manifest.json / config.json of a model folder")
        self.act_import.setShortcut(QKeySequence("Ctrl+Shift+O"))
        self.act_open = QAction("Open model folder…", self)
        self.act_prepare = QAction("Prepare the default model", self)
        self.act_score = QAction("Score a text file…", self)
        self.act_open_conv = QAction("Open conversation…", self)
        self.act_open_conv.setShortcut(QKeySequence.StandardKey.Open)
        self.act_save_conv = QAction("Save conversation as…", self)
        self.act_save_conv.setShortcut(QKeySequence.StandardKey.Save)
        self.act_reopen_last = QAction("Reopen the last conversation", self)
        self.act_reopen_last.setToolTip("The document as it was when lmdesk was last closed")
        self.act_reopen_last.setVisible(False)
        self.act_quit = QAction("Quit", self)
        self.act_quit.setShortcut(QKeySequence.StandardKey.Quit)
        for a in (self.act_open_conv, self.act_save_conv, self.act_reopen_last):
            m.addAction(a)
        m.addSeparator()
        for a in (self.act_import, self.act_open):
            m.addAction(a)
        self.models_menu = m.addMenu("Models on this computer")
        self.models_menu.aboutToShow.connect(self.fill_models_menu)
        for a in (self.act_prepare, self.act_score):
            m.addAction(a)
        m.addSeparator()
        self.act_export_table = QAction("Export table…", self)
        self.act_export_table.setToolTip("Every token of the document with its p, bits, rank and entropy, as CSV or JSON")
        self.act_export_chart = QAction("Export chart as PNG…", self)
        self.act_export_chart.setToolTip("The distribution chart as a picture")
        self.act_export_plot = QAction("Export plot as PNG…", self)
        self.act_export_plot.setToolTip("The surprise plot as a picture")
        for a in (self.act_export_table, self.act_export_chart, self.act_export_plot):
            m.addAction(a)
        m.addSeparator()
        m.addAction(self.act_quit)

        e = self.menuBar().addMenu("&Edit")
        self.act_undo = QAction("Undo", self)
        self.act_undo.setShortcut(QKeySequence.StandardKey.Undo)
        e.addAction(self.act_undo)
        self.act_copy = QAction("Copy tokens", self)
        self.act_copy.setShortcut(QKeySequence.StandardKey.Copy)
        self.act_copy_table = QAction("Copy as table", self)
        self.act_copy_table.setShortcut(QKeySequence("Ctrl+Shift+C"))
        self.act_json = QAction("Conversation as JSON…", self)
        self.act_json.setShortcut(QKeySequence("Ctrl+J"))
        self.act_json.setToolTip("The conversation as data: messages, tool calls and tools, to read, edit and apply")
        e.addAction(self.act_json)
        for a in (self.act_copy, self.act_copy_table):
            # only while the document or the plot has the keyboard: Ctrl+C in a text box copies its own text
            a.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            e.addAction(a)
            self.doc_view.addAction(a)
            self.surprise.addAction(a)

        v = self.menuBar().addMenu("&View")
        self.act_projector = QAction("Projector mode", self, checkable=True)
        self.act_projector.setShortcut(QKeySequence(Qt.Key.Key_F11))
        self.act_zoom_in = QAction("Zoom in", self)
        self.act_zoom_in.setShortcuts([QKeySequence.StandardKey.ZoomIn, QKeySequence("Ctrl+=")])
        self.act_zoom_out = QAction("Zoom out", self)
        self.act_zoom_out.setShortcut(QKeySequence.StandardKey.ZoomOut)
        self.act_zoom_reset = QAction("Actual size", self)
        self.act_zoom_reset.setShortcut(QKeySequence("Ctrl+0"))
        self.act_contrast = QAction("High contrast", self, checkable=True)
        self.act_compact = QAction("Compact tokens", self, checkable=True)
        self.act_ids = QAction("Show token ids", self, checkable=True)
        self.act_colour = QAction("Colour tokens by surprise", self, checkable=True)
        self.act_colour.setChecked(True)
        self.act_controls = QAction("Show the controls", self, checkable=True)
        self.act_controls.setChecked(True)
        self.act_controls.setShortcut(QKeySequence(Qt.Key.Key_F9))
        self.act_controls.setToolTip("The system prompt, your message and the sampling settings, on the left")
        for a in (self.act_projector, self.act_controls, self.act_zoom_in, self.act_zoom_out, self.act_zoom_reset):
            v.addAction(a)
        v.addSeparator()
        for a in (self.act_contrast, self.act_compact, self.act_ids, self.act_colour):
            v.addAction(a)
        v.addSeparator()
        self.act_compare = QAction("Compare with a second model…", self)
        self.act_compare.setShortcut(QKeySequence("Ctrl+M"))
        self.act_compare.setToolTip("Score the document's text with a second model too: where is each more surprised?")
        v.addAction(self.act_compare)

    def _connect(self) -> None:
        w = self.client.worker
        w.stateChanged.connect(self.on_state)
        w.modelLoaded.connect(self.on_model_loaded)
        w.modelMissing.connect(self.on_model_missing)
        w.failed.connect(self.show_error)
        w.textReturned.connect(self.on_text_returned)
        w.busyChanged.connect(self.on_busy)
        w.progress.connect(self.on_progress)
        w.notice.connect(self.status.setText)
        w.samplingShown.connect(self.on_sampling_shown)
        w.inspected.connect(self.on_inspected)
        w.secondChanged.connect(self.on_second_changed)
        w.toolsShown.connect(self.on_tools_shown)
        w.conversationShown.connect(self.on_conversation_shown)
        self.tools_panel.opened.connect(lambda _on: QTimer.singleShot(0, self.fit_left_panel))
        self.tools_panel.toolsApplied.connect(lambda tools: self.send(SetTools(tuple(tools))))
        self.tools_panel.callAdded.connect(lambda call: self.send(AddToolCall(call)))
        self.tools_panel.resultAdded.connect(lambda text, name: self.send(AddToolResult(text, name)))
        self.act_json.triggered.connect(self.open_json)
        self.json_dialog.applied.connect(self.do_apply_json)
        w.compared.connect(self.on_compared)
        self.act_compare.triggered.connect(self.open_compare)
        self.compare_view.loadRequested.connect(self.do_load_second)
        self.compare_view.closeRequested.connect(lambda: self.client.send(CloseSecond()))
        self.compare_view.compareRequested.connect(self.do_compare_again)
        self.inside_view.attentionShown.connect(self.on_attention_shown)
        self.inside_view.keyClicked.connect(self.on_token_clicked)

        self.end_turn.clicked.connect(self.do_end_turn)
        self.message.submitted.connect(self.do_end_turn)
        self.new_conv.clicked.connect(lambda: self.send(NewConversation()))
        self.apply_system.clicked.connect(self.do_apply_system)
        self.generate.clicked.connect(lambda: self.send(Generate(self.max_tokens.value())))
        self.stop.clicked.connect(self.client.stop)
        self.cancel.clicked.connect(self.client.stop)
        self.greedy_step.clicked.connect(lambda: self.send(Step(True)))
        self.sample_step.clicked.connect(self.do_sample_step)
        self.right_tabs.currentChanged.connect(self.on_right_tab)
        self.undo.clicked.connect(lambda: self.send(Undo()))
        self.act_undo.triggered.connect(lambda: self.undo.isEnabled() and self.send(Undo()))
        self.reset_response.clicked.connect(lambda: self.send(ResetResponse()))
        for widget in (self.temperature, self.top_p):
            widget.valueChanged.connect(self.send_settings)
        for widget in (self.top_k, self.seed):
            widget.valueChanged.connect(self.send_settings)
        self.fixed_seed.toggled.connect(self.send_settings)
        self.k_spin.valueChanged.connect(lambda k: self.send(SetK(k)))
        self.k_spin.valueChanged.connect(lambda k: self.dist.prepare_rows(k + 1))  # + the actual token's line
        self.dist.prepare_rows(self.k_spin.value() + 1)
        self.back_to_end.clicked.connect(lambda: self.show_position(None))
        self.force.clicked.connect(self.do_force)
        self.force_edit.returnPressed.connect(self.do_force)

        for find, button in self.find_buttons.items():
            button.clicked.connect(lambda _=False, find=find: self.find(find))
        self.scope.currentIndexChanged.connect(self.on_scope)
        self.doc_view.tokenClicked.connect(self.on_token_clicked)
        self.doc_view.spanSelected.connect(self.on_span)
        self.doc_view.selectionCleared.connect(self.on_selection_cleared)
        self.surprise.pointClicked.connect(self.on_token_clicked)
        self.surprise.spanChanged.connect(self.on_span)
        self.dist.candidateClicked.connect(self.on_candidate)

        self.prepare_button.clicked.connect(lambda: self.send(PrepareDefault()))
        self.template_button.clicked.connect(self.do_use_family_template)
        self.act_prepare.triggered.connect(lambda: self.send(PrepareDefault()))
        self.import_button.clicked.connect(self.do_import)
        self.act_import.triggered.connect(self.do_import)
        self.open_button.clicked.connect(self.do_open_folder)
        self.act_open.triggered.connect(self.do_open_folder)
        self.act_score.triggered.connect(self.do_score_file)
        self.act_open_conv.triggered.connect(self.do_open_conversation)
        self.act_save_conv.triggered.connect(self.do_save_conversation)
        self.act_reopen_last.triggered.connect(
            lambda: self.keep_last is not None and self.send(OpenConversation(str(self.keep_last))))
        self.act_quit.triggered.connect(self.close)
        self.act_copy.triggered.connect(lambda: self.do_copy(as_table=False))
        self.act_copy_table.triggered.connect(lambda: self.do_copy(as_table=True))
        self.act_export_table.triggered.connect(self.do_export_table)
        self.act_export_chart.triggered.connect(lambda: self.do_export_png(self.dist, "chart"))
        self.act_export_plot.triggered.connect(lambda: self.do_export_png(self.surprise, "plot"))
        self.act_projector.toggled.connect(self.set_projector_mode)
        self.act_zoom_in.triggered.connect(lambda: self.set_zoom(self.zoom * 1.15))
        self.act_zoom_out.triggered.connect(lambda: self.set_zoom(self.zoom / 1.15))
        self.act_zoom_reset.triggered.connect(
            lambda: self.set_zoom(PROJECTOR_ZOOM if self.act_projector.isChecked() else 1.0))
        self.act_contrast.toggled.connect(lambda on: self.apply_theme(themes.HIGH_CONTRAST if on else self.desktop_theme))
        self.act_controls.toggled.connect(self.show_controls)
        self.act_compact.toggled.connect(self.doc_view.set_compact)
        self.act_ids.toggled.connect(self.doc_view.set_show_ids)
        self.act_colour.toggled.connect(self.doc_view.set_color_by_surprise)
        QShortcut(QKeySequence(Qt.Key.Key_Escape), self, activated=lambda: self.show_position(None))
        self.send(SetK(self.k_spin.value()))

    # -- sending ------------------------------------------------------------------------------
    def send(self, intent: Intent) -> None:
        self.hide_error()
        if not isinstance(intent, (SetSettings, SetK)):
            self.status.setText("")  # "Opened …", "Saved …": about the document before this request
        if intent.back_to_the_end and self.position is not None:
            self.position = None
            self.show_position(None)
        self.client.send(intent)

    def current_settings(self) -> SamplingSettings:
        return SamplingSettings(
            temperature=self.temperature.value(), top_k=self.top_k.value(), top_p=self.top_p.value(),
            seed=self.seed.value() if self.fixed_seed.isChecked() else None,
        )

    def send_settings(self, *_args) -> None:
        self.client.send(SetSettings(self.current_settings()))
        self._sampling_asked = None  # the settings changed: the Sampling tab asks again
        self.ask_sampling()

    # -- tools and the conversation as JSON -------------------------------------------------------
    def on_tools_shown(self, ts: ToolsState) -> None:
        self.tools_panel.set_tools(ts.tools)
        if ts.template_writes_tools is None:
            support = "This model has no chat template: tools need a conversation."
        elif ts.template_writes_tools:
            support = ("The chat template has its own format for tools: the definitions, calls and results are "
                       "written in it, as models of its family were trained to read and write them.")
        else:
            support = ("This model's chat template has no format for tools, so lmdesk writes them itself, clearly "
                       "labelled: the definitions as JSON in the system message, calls and results as text turns. "
                       "The model was not trained on this: what it makes of them is a guess.")
        self.tools_panel.set_support(support)
        self.tools_panel.set_pending_call(ts.pending[0] if ts.pending else None)
        last = max((seg.message for seg in self.state.segments if seg.message is not None), default=None)
        notes = {}
        if ts.pending and last is not None:
            names = ", ".join(c.name for c in ts.pending)
            notes[last] = f"wrote a tool call: {names} (add its result in Tools)"
        self.doc_view.set_notes(notes)

    def open_json(self) -> None:
        self._json_asked = True
        self.json_dialog.editor.setPlainText("")
        self.json_dialog.say("")
        self.json_dialog.show()
        self.json_dialog.raise_()
        if self.info is None:
            self.json_dialog.say("No model is loaded yet.")
            return
        self.client.send(ShowConversation())

    def do_apply_json(self, conversation) -> None:
        self.send(ApplyConversation(conversation))
        self._json_asked = True  # then the window shows what the document holds, read back from its tokens
        self.client.send(ShowConversation())

    def on_conversation_shown(self, conversation) -> None:
        if self._json_asked:
            self._json_asked = False
            self.json_dialog.set_conversation(conversation)

    # -- comparing with a second model ------------------------------------------------------------
    def open_compare(self) -> None:
        self.update_compare_models()
        if self._compared is None:
            self.compare_view.clear("Load a second model to compare: the document's text, exactly as it is, "
                                    "is scored by both, and the two are lined up word by word.")
        self.compare_window.show()
        self.compare_window.raise_()
        self.compare_window.activateWindow()

    def do_load_second(self, folder: str) -> None:
        self._second_folder = folder
        self._compare_error = ""
        self.client.send(LoadSecond(folder, self.state.revision))

    def do_compare_again(self) -> None:
        self._compare_error = ""
        self.client.send(Compare(self.state.revision))

    def update_compare_models(self) -> None:
        from ..engine.model_library import installed_models

        mine = Path(self.info.folder).resolve() if self.info else None
        choices = [(f"{e.name} ({e.architecture})", str(e.folder)) for e in installed_models()
                   if e.folder.resolve() != mine]
        second = self._second_folder
        if self._second_name and second and all(Path(f).resolve() != Path(second).resolve() for _, f in choices):
            choices.append((self._second_name, second))  # a folder chosen from elsewhere
        self.compare_view.set_models(self.info.name if self.info else "", self._second_name, choices)

    def on_second_changed(self, name: str) -> None:
        self._second_name = name or None
        if not name:
            self._compared = None
            self.compare_view.clear("The second model is closed (its memory is free again). Load one to compare.")
        self.update_compare_models()

    def on_compared(self, compared: Compared) -> None:
        self._compared = compared
        self.compare_view.set_result(compared.alignment, list(compared.figures), list(compared.scored))
        self.compare_view.set_busy(False, self.compare_note())

    def compare_note(self) -> str:
        """What the compare window says of the comparison on show."""
        if self._compare_error:
            return f"⚠ {self._compare_error}"
        c = self._compared
        if c is None:
            return ""
        if c.revision != self.state.revision:
            return ("The document has changed since the two models compared it: Score again to compare it as it "
                    "is now.")
        if c.markup_bits is None:
            return "Both models read the document's text exactly as it is."
        a, b = (f.model for f in c.figures)
        return (f"Each model read the conversation in its own chat format; only the messages' texts are compared "
                f"(the template's markup and tool calls: {a} {c.markup_bits[0]:,.1f} bits, {b} "
                f"{c.markup_bits[1]:,.1f} bits).")

    # -- the Inside tab -------------------------------------------------------------------------
    def inside_visible(self) -> bool:
        return self.right_tabs.currentWidget() is self._inside_page

    def on_right_tab(self, _index: int) -> None:
        if not self.inside_visible():
            self.doc_view.set_attention(None)  # the tint belongs to the Inside tab
        elif self.inside_view.shown is not None:
            self.inside_view.set_inspection(self.inside_view.shown, lambda i: self.texts(i).display)
        self.ask_sampling()
        self.ask_inside()

    def inside_position(self) -> int | None:
        """P, the token whose prediction the Inside tab looks at: the clicked
        chip's, or the token after the text."""
        n = len(self.state.tokens)
        return n if self.position is None else self.position

    def ask_inside(self) -> None:
        """Ask the worker to look inside at the shown position, when the
        Inside tab shows and does not show that position of this document yet."""
        state = self.state
        if not self.inside_visible() or self.busy or self.info is None:
            return
        if not state.tokens:
            self.inside_view.clear("The document is empty: write something to look inside the model.")
            self._inside_asked = None
            return
        p = self.inside_position()
        if p == 0:
            self.inside_view.clear("Token 0 is the first token: nothing predicted it. Click a later token.")
            self._inside_asked = None
            return
        key = (state.revision, p)
        shown = self.inside_view.shown
        if self._inside_asked == key or (shown is not None and (shown.revision, shown.inspection.position) == key):
            return
        self._inside_asked = key
        self.client.send(Inspect(p, state.revision))

    def on_inspected(self, shown: Inspected) -> None:
        if self.texts is None or shown.revision != self.state.revision:
            return  # the document moved on meanwhile
        self.inside_view.set_inspection(shown, lambda i: self.texts(i).display)
        QTimer.singleShot(0, lambda: self.inside_visible() and self.fit_side_panel(
            self.inside_view.needed_width() + self._page_frame(self._inside_page)))

    def on_attention_shown(self, query: int, weights, label: str) -> None:
        if query < 0 or not self.inside_visible():
            self.doc_view.set_attention(None)
        else:
            self.doc_view.set_attention(query, weights, label)

    # -- the Sampling tab -----------------------------------------------------------------------
    def sampling_visible(self) -> bool:
        return self.right_tabs.currentWidget() is self._sampling_page

    def do_sample_step(self) -> None:
        self.right_tabs.setCurrentWidget(self._sampling_page)  # the draw is what was asked to see
        self.send(Step(False))

    def ask_sampling(self) -> None:
        """Ask the worker how the next token would be chosen, when the
        Sampling tab shows and has nothing for the current document yet."""
        state = self.state
        at = self.position if self.position is not None and self.position < len(state.tokens) else None
        key = (state.revision, at)
        if not self.sampling_visible() or self.busy or self.info is None or self._sampling_asked == key:
            return
        if not state.tokens:
            self.sampling_view.clear("The document is empty: write something and the next token's choice "
                                     "shows here.")
            return
        if at == 0:
            self.sampling_view.clear("Token 0 is the first token: nothing predicted it. Click a later token.")
            self._sampling_asked = key
            return
        shown = self._sampling
        if shown is not None and shown.revision == state.revision and shown.at == at and (
                shown.draw is not None or (at is not None and shown.pipeline.settings == self.current_settings())):
            return  # on show already (the draw that made this document, or this position with these settings)
        self._sampling_asked = key
        if at is None:
            self.client.send(ExplainNext(state.revision))  # quiet: not through send(), which clears messages
        else:
            self.client.send(ExplainAt(at, state.revision))

    def on_sampling_shown(self, shown: SamplingShown) -> None:
        self._sampling = shown
        self.show_sampling()

    def show_sampling(self) -> None:
        shown, texts = self._sampling, self.texts
        if shown is None or texts is None:
            return
        if shown.draw is not None and shown.position is not None:
            self.sampling_view.set_draw(shown.draw, lambda i: texts(i).display, shown.position)
        elif shown.at is not None:
            self.sampling_view.set_pipeline_at(shown.pipeline, lambda i: texts(i).display, shown.at, shown.actual)
        else:
            self.sampling_view.set_pipeline(shown.pipeline, lambda i: texts(i).display)
        QTimer.singleShot(0, self.fit_sampling_table)

    def fit_sampling_table(self) -> None:
        if self.sampling_visible():
            self.fit_side_panel(self.sampling_view.needed_width() + self._page_frame(self._sampling_page))

    @staticmethod
    def _page_frame(page: QScrollArea) -> int:
        """What a tab's scrolling page takes of the side panel's width beside its content."""
        inner = page.widget().layout().contentsMargins()
        return inner.left() + inner.right() + page.verticalScrollBar().sizeHint().width() + 8

    def fit_side_panel(self, needed: int) -> None:
        """Widen the side panel, at the document's expense (a quarter of it at
        most), to ``needed`` pixels: until a tab's table shows all its columns."""
        sizes = self.split.sizes()
        if len(sizes) != 3:
            return
        short = needed - sizes[2]
        # the document keeps the room its own rows need (the question row: Most surprising …)
        centre = self.split.widget(1)
        margins = centre.layout().contentsMargins() if centre.layout() is not None else None
        keep = self.find_row.sizeHint().width() + (margins.left() + margins.right() if margins else 0) + 12
        spare = sizes[1] - max(centre.minimumSizeHint().width(), keep)
        if short > 0 and spare > 0:
            take = min(short, sizes[1] // 4, spare)
            self.split.setSizes([sizes[0], sizes[1] - take, sizes[2] + take])

    def do_end_turn(self) -> None:
        text = self.message.toPlainText()
        if not text.strip():
            self.show_error("The message is empty: type something first.")
            return
        if self.busy:
            self.show_error("The model is busy; wait a moment or press Stop.")
            return
        if not self.state.tokens:
            system = self.system_edit.toPlainText()
            self.client.send(SetSystemPrompt(system if system.strip() else None))
        self.send(EndTurn(text))
        self._unsent = text  # until the model has read it, or it comes back: closing keeps it
        self.message.clear()

    def on_text_returned(self, box: str, text: str) -> None:
        """A request that did not go through (too long, stopped, failed): the
        text typed for it goes back in its box, before anything typed since."""
        if box == "force":
            typed = self.force_edit.text()
            self.force_edit.setText(text + typed)
            return
        if text == self._unsent:
            self._unsent = None
        typed = self.message.toPlainText()
        self.message.setPlainText(text if not typed.strip() else f"{text}\n{typed}")

    def do_apply_system(self) -> None:
        text = self.system_edit.toPlainText()
        self.send(SetSystemPrompt(text if text.strip() else None))

    def do_force(self) -> None:
        text = self.force_edit.text()
        if not text:
            self.show_error("Type the text to force first.")
            return
        index = self.position if self.position is not None else len(self.state.tokens)
        self.send(ReplaceText(index, text))
        self.force_edit.clear()
        self.position = None

    def do_import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a model", "",
            "Models (*.gguf manifest.json config.json);;GGUF models (*.gguf);;All files (*)")
        if path:
            self.open_model_path(path)

    def do_use_family_template(self) -> None:
        if self.info is not None and self.info.suggested_template is not None:
            self.send(UseFamilyTemplate(self.info.suggested_template[0]))

    def open_model_path(self, path: str) -> None:
        """A GGUF file is imported (or opened where it was imported before); a
        file of a model folder, or the folder itself, opens that folder."""
        p = Path(path)
        if p.suffix.lower() == ".gguf":
            self.send(ImportGguf(str(p)))
        elif p.is_file():
            self.send(LoadModel(str(p.parent)))
        else:
            self.send(LoadModel(str(p)))

    def fill_models_menu(self) -> None:
        """File → Models on this computer: every model folder in the model places."""
        from ..engine.model_library import installed_models

        self.models_menu.clear()
        current = Path(self.info.folder).resolve() if self.info else None
        entries = installed_models()
        for entry in entries:
            act = self.models_menu.addAction(f"{entry.name}  ({entry.architecture}) — {entry.folder}")
            act.setCheckable(True)
            act.setChecked(entry.folder.resolve() == current)
            act.setEnabled(not self.busy)
            act.triggered.connect(lambda _=False, folder=str(entry.folder): self.send(LoadModel(folder)))
        if not entries:
            none = self.models_menu.addAction("No model folders yet: File → Open model… imports a GGUF file")
            none.setEnabled(False)

    def do_open_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a model folder")
        if path:
            self.send(LoadModel(path))

    def do_save_conversation(self) -> None:
        if not self.state.tokens:
            self.show_error("There is nothing to save yet: the document is empty.")
            return
        name = (self.info.name if self.info else "conversation") + SUFFIX
        path, _ = QFileDialog.getSaveFileName(self, "Save the conversation", str(Path.home() / name),
                                              f"lmdesk conversations (*{SUFFIX});;All files (*)")
        if path:
            if not path.endswith(".json"):
                path += SUFFIX
            self.send(SaveConversation(path))

    def do_open_conversation(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a conversation", str(Path.home()),
                                              f"lmdesk conversations (*{SUFFIX} *.json);;All files (*)")
        if path:
            self.send(OpenConversation(path))

    def do_score_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Score a text file", "", "Text (*.txt *.md);;All files (*)")
        if not path:
            return
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except (OSError, UnicodeDecodeError) as exc:
            self.show_error(f"Cannot read {path} as UTF-8 text ({exc}).")
            return
        self.send(LoadText(text))

    # -- the lab's questions -----------------------------------------------------------------------
    def replies_only(self) -> bool:
        return self.scope.currentIndex() == 1

    def scope_positions(self, state: EngineState | None = None) -> list[int]:
        state = state or self.state
        return reply_positions(state.tokens, state.segments) if self.replies_only() else list(range(len(state.tokens)))

    def plot_bits(self, state: EngineState, start: int = 0) -> list[float | None]:
        """The plot's values from position ``start`` on: every token's bits, or only the
        replies' (the rest None)."""
        bits = [t.stats.bits if t.stats else None for t in state.tokens[start:]]
        if not self.replies_only():
            return bits
        keep = set(reply_positions(state.tokens, state.segments, start))
        return [b if i in keep else None for i, b in enumerate(bits, start)]

    def on_scope(self, *_args) -> None:
        self._found = None
        self._plot_values = self.plot_bits(self.state)
        if self.texts is not None:
            self.surprise.set_bits(self._plot_values, 0)
        self.update_span_label()

    def find(self, find: str) -> None:
        """Go to the answer of one of the lab's questions; asked again, to the next answer."""
        order = ranked(self.state.tokens, self.scope_positions(), find)
        where = "the replies" if self.replies_only() else "the document"
        if not order:
            self.show_error(f"There is nothing to look through in {where} yet: no token has been predicted there.")
            return
        k = self._found[1] + 1 if self._found is not None and self._found[0] == find else 0
        k %= len(order)
        self._found = (find, k)
        index = order[k]
        self.on_token_clicked(index)  # the chip selected (and scrolled to), its chart shown
        st = self.state.tokens[index].stats
        shown = self.texts(self.state.tokens[index].id).display if self.texts else "?"
        what = {"surprising": "Most surprising", "confident": "Most confident", "uncertain": "Most uncertain"}[find]
        figure = f"entropy {st.entropy:.2f} bits" if find == "uncertain" else f"{st.bits:.2f} bits"
        self.status.setText(f"{what}, {k + 1} of {len(order):,} in {where}: position {index}, ‘{shown}’, "
                            f"{figure} (click again for the next)")

    def selected_range(self) -> tuple[int, int] | None:
        """The selected span, else the clicked chip, as (start, stop)."""
        n = len(self.state.tokens)
        if self.span is not None:
            a, b = max(0, self.span[0]), min(n, self.span[1])
            return (a, b) if a < b else None
        if self.position is not None and 0 <= self.position < n:
            return self.position, self.position + 1
        return None

    def do_copy(self, as_table: bool = False) -> None:
        chosen = self.selected_range()
        if chosen is None:
            self.show_error(export_actions.NOTHING_SELECTED)
            return
        self._report(export_actions.copy_tokens(self.state.tokens, *chosen, self.texts, as_table=as_table))

    def do_export_table(self) -> None:
        self._report(export_actions.export_table(self, self.state.tokens, self.texts,
                                                 model=self.info.name if self.info else None))

    def do_export_png(self, widget, what: str) -> None:
        self._report(export_actions.export_png_dialog(self, widget, what=what,
                                                      name=self.info.name if self.info else None))

    def _report(self, outcome) -> None:
        if outcome is None:  # the dialog was cancelled
            return
        if outcome.error:
            self.show_error(outcome.message)
        else:
            self.hide_error()
            self.status.setText(outcome.message)

    # -- receiving -------------------------------------------------------------------------------
    def on_model_loaded(self, info: ModelInfo) -> None:
        self.info = info
        self.update_compare_models()
        self.missing.setVisible(False)
        self.texts = TokenTextTable(info.tokenizer, info.special_ids)
        self.model_label.setText(f"<b>{info.name}</b><br>context {info.context_length:,} tokens · "
                                 f"vocabulary {info.vocab_size:,}")
        self.system_edit.setPlainText(info.default_system_prompt or "")
        self.system_edit.setEnabled(info.has_template)
        self.status.setText(f"{info.name} is ready.")
        self.template_button.setVisible(info.suggested_template is not None)
        if info.suggested_template is not None:
            self.template_button.setText(f"Use the {info.suggested_template[1]} chat format")
            self.status.setText(f"{info.name} has no chat template, so it reads plain text. Its family's chat "
                                f"format is one click away: “Use the {info.suggested_template[1]} chat format”.")
        elif not info.has_template:
            self.status.setText(f"{info.name} has no chat template, so it reads plain text.")
        if self.keep_last is not None and self.keep_last.is_file() and not self.state.tokens:
            self.act_reopen_last.setVisible(True)
            self.status.setText(f"{info.name} is ready. The conversation from last time was kept: "
                                "File → Reopen the last conversation.")
        self.setWindowTitle(f"{info.name} — lmdesk {__version__}")
        self.send_settings()

    def on_model_missing(self, why: str) -> None:
        self.missing_text.setText(why)
        self.missing.setVisible(True)
        self.model_label.setText("No model loaded.")

    def on_state(self, state: EngineState) -> None:
        """A new state from the worker: drawn now if the last drawing was long
        enough ago, else at the next frame (with whatever came meanwhile)."""
        if self._pending is None:
            self._pending_first = state.first_changed
        else:  # each state's first_changed counts from the one before it
            self._pending_first = min(self._pending_first, state.first_changed)
        self._pending = state
        if state.next is not None:
            self._fresh_next = state
        if not self._draw_timer.isActive():
            wait = max(0.0, self._next_draw - time.monotonic())
            self._draw_timer.start(round(wait * 1000))

    def draw_pending(self, final: bool = False) -> None:
        """Draw the newest state received; ``final``: all of it, now (the work is over)."""
        self._draw_timer.stop()
        state, self._pending = self._pending, None
        if state is None:
            if final and self._partly_drawn:  # the last state came in a frame that left out the plot and chart
                self._draw_later(BOTH)
                self._partly_drawn = False
            return
        if state.first_changed != self._pending_first:
            state = dataclasses.replace(state, first_changed=self._pending_first)
        began = time.monotonic()
        # while the model writes, the chips follow every frame; the plot and the chart, which
        # redraw all they show, a few times a second, and never in the same frame (each costs
        # 30-50 ms with thousands of tokens: together they would hold the window up twice as long)
        later = frozenset()
        if final or not self.busy:  # the chips now, the plot and the chart each in a frame of its own
            parts, later = frozenset(), BOTH
        elif began - self._last_slow_draw >= SLOW_PARTS_S / 2:
            parts = PLOT if self._next_slow_part == "plot" else CHART
            if parts is CHART and not self._can_chart(state):
                parts = frozenset()  # the chart's turn waits for a state with the distribution (five a second)
            else:
                self._next_slow_part = "chart" if parts is PLOT else "plot"
                self._last_slow_draw = began
        else:
            parts = frozenset()
        if self.busy:  # ... and not with the chips either: the plot's or the chart's turn comes after their painting
            parts, later = frozenset(), later | parts
        self.draw_state(state, parts=parts)
        self._partly_drawn = parts | later != BOTH
        if later:
            self._draw_later(later)
        self._next_draw = began + FRAME_S
        # the drawing's cost includes the painting it causes, which Qt does before it runs
        # what is posted after it: the next drawing waits twice as long as this one took
        QTimer.singleShot(0, self, lambda: self._frame_done(began))

    def _frame_done(self, began: float) -> None:
        self._next_draw = max(self._next_draw, time.monotonic() + 2 * (time.monotonic() - began))

    def _can_chart(self, state: EngineState) -> bool:
        """Whether ``state`` has what the chart shows: while the model writes, most states
        come without the next-token distribution (the worker works it out a few times a second)."""
        return (state.next is not None or not state.tokens or self.position is not None
                or (self.busy and self._fresh_next is not None))

    def _next_to_chart(self):
        """The next-token distribution the chart shows for the end of the document: the state's
        own, or while the model writes the newest one received (the state that brought it may
        have been passed over for a newer one before its frame came: the chart's turn was lost)."""
        if self.state.next is not None:
            return self.state.next
        return self._fresh_next.next if self._fresh_next is not None and self.busy else None

    def draw_state(self, state: EngineState, parts: frozenset[str] = BOTH) -> None:
        """Show ``state``: the chips always; the surprise plot and the chart (with
        the figures under the document) when ``parts`` names them."""
        self.state = state
        if (state.in_conversation and not self.system_edit.hasFocus()
                and (state.system_prompt or "") != self.system_edit.toPlainText()):
            self.system_edit.setPlainText(state.system_prompt or "")  # e.g. kept through a model switch
        n = len(state.tokens)
        first = min(state.first_changed, len(self._plot_values), n)
        if state.in_conversation != self._plot_in_conversation:  # "the replies" means all or some
            first = 0
        self._plot_in_conversation = state.in_conversation
        self._plot_values[first:] = self.plot_bits(state, first)
        self._plot_first = min(self._plot_first, first)
        if self.texts is not None:
            self._draw_chips(state.first_changed)
        if "plot" in parts:
            self._draw_plot()
        if self.position is not None and self.position >= n:
            self.position = None
        if self.span is not None and self.span[1] > n:
            self.span = None
            self.doc_view.clear_selection()
            self.surprise.set_selection(None, None)
        if self.busy and self.position is None:
            self.doc_view.scroll_to_end()
        if "chart" in parts:
            self._draw_chart()
        self._later -= parts  # drawn now, from this newer state
        self._set_enabled()
        self.ask_sampling()
        self.ask_inside()
        self.stateShown.emit(state)

    # chips laid out in one turn: reading a document of 8,000 tokens showed them all at once,
    # 23-31 ms of the window's time (and twice that with a core busy elsewhere)
    chips_per_turn = 2500

    def _draw_chips(self, first_changed: int | None = None) -> None:
        """The state's chips in the document view; a long new stretch of them a part a turn,
        the first part now and the rest in turns of their own (the view reads as a shorter
        document meanwhile). ``first_changed``: of the state against the one drawn before."""
        tokens = self.state.tokens
        n = len(tokens)
        valid = min(self._chips_shown, n if first_changed is None else first_changed, n)
        upto = n if n - valid <= self.chips_per_turn else valid + self.chips_per_turn
        self.doc_view.set_document(tokens if upto == n else tokens[:upto], self.state.segments, self.texts, valid)
        self._chips_shown = upto
        if upto < n:
            self._draw_later(CHIPS)

    def _draw_plot(self) -> None:
        if self.texts is not None:
            self.surprise.set_bits(self._plot_values, self._plot_first, growing=self.busy)
            self._plot_first = len(self.state.tokens)

    def _draw_chart(self) -> None:
        if self._can_chart(self.state):  # else the chart keeps the last one it showed
            self.show_position(self.position)
            self.update_span_label()

    def _draw_later(self, parts: frozenset[str]) -> None:
        """Draw ``parts`` of the state on screen in frames of their own, the plot first:
        at the end of a long document's work, the chips, the plot and the chart in one go
        held the window up 60-110 ms (the painting they cause comes on top)."""
        self._later |= parts
        if not self._later_timer.isActive():
            self._later_timer.start(LATER_MS)

    def _draw_next_later(self) -> None:
        if "chips" in self._later:
            self._later -= CHIPS
            if self.texts is not None:
                self._draw_chips()
                if self.busy and self.position is None:
                    self.doc_view.scroll_to_end()
        elif "plot" in self._later:
            self._later -= PLOT
            self._draw_plot()
        elif "chart" in self._later:
            self._later -= CHART
            self._draw_chart()
        if self._later:
            self._later_timer.start(LATER_MS)

    @property
    def drawing(self) -> bool:
        """Whether a state received, or a part of the one on screen, is still to be drawn."""
        return self._pending is not None or bool(self._later)

    @property
    def caught_up(self) -> bool:
        """Whether the worker has answered all that was sent and the window has drawn all of it
        (the plot and the chart come in turns of their own after the chips)."""
        worker = self.client.worker
        return (worker.handled == self.client.sent and not self.busy and not self.drawing
                and self.state.revision == worker._revision)

    def on_busy(self, busy: bool, what: str) -> None:
        if not busy:
            self.draw_pending(final=True)  # the work is over: show where it ended (the chips now, the rest next)
            # Python's collector of reference cycles looks through every object now and then: with
            # a document of thousands of tokens (their statistics, the states, the history) that
            # held the window up 51 ms at 2,000 tokens and 77 ms at 8,000, in the middle of
            # generating. What exists when a request is done is set aside from those looks;
            # objects still go the moment nothing refers to them.
            gc.freeze()
            if self._busy_with == "end_turn":
                self._unsent = None  # read, or back in its box
        self._busy_with = what if busy else ""
        self.busy = busy
        # the chart's bars glide to a clicked token's next distribution; while the model writes,
        # a new one comes every frame, and gliding would redraw the chart 60 times a second
        self.dist.set_animated(not (busy and what == "generate"))
        if not busy and self.status.text() == self._last_progress:
            self.status.setText("")  # the work it described is over
        self.progress.setVisible(busy)
        self.cancel.setVisible(busy and INTENTS[what].long)
        if busy:
            self.progress.setRange(0, 0)
        self._set_enabled()
        self.ask_sampling()
        self.ask_inside()
        if busy:
            self.compare_view.set_busy(True, {"load_second": "Loading the second model and scoring the text…",
                                              "compare": "The second model reads the text…"}.get(
                what, "The model is busy; comparing waits until it is done."))
        else:
            self.compare_view.set_busy(False, self.compare_note())

    def on_progress(self, fraction: float, message: str) -> None:
        # the bar and the status line are redrawn at most four times a second (a progress
        # bar repaints at once on each new value: 12 ms each, 30 times a second while generating)
        now = time.monotonic()
        if 0 <= fraction < 1 and now - self._progress_shown < 0.25:
            return
        self._progress_shown = now
        self._last_progress = message  # what the status line shows, cleared when the work ends
        if fraction < 0:
            self.progress.setRange(0, 0)
        else:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(fraction * 1000))
        self.status.setText(message)

    def show_error(self, message: str) -> None:
        # a word of thousands of characters (a damaged file's number) would make the window that wide
        message = re.sub(r"\S{64,}", lambda m: f"{m.group(0)[:30]}…{m.group(0)[-30:]}", message)
        self.banner.setText(f"⚠ {message}")
        self.banner.setVisible(True)
        self.status.setText("")
        if self._busy_with in ("load_second", "compare"):  # said where it was asked: in the compare window
            self._compare_error = message

    def hide_error(self) -> None:
        self.banner.setVisible(False)

    def _set_enabled(self) -> None:
        ready = self.info is not None and not self.busy
        has_doc = bool(self.state.tokens)
        for w in (self.end_turn, self.new_conv, self.apply_system):
            w.setEnabled(ready)
        self.message.setEnabled(self.info is not None)  # the next message may be typed while the model works
        for w in (self.generate, self.greedy_step, self.sample_step, self.force):
            w.setEnabled(ready and has_doc)
        self.undo.setEnabled(ready and self.state.can_undo)
        self.reset_response.setEnabled(ready and self.state.response_start is not None
                                       and self.state.response_start < len(self.state.tokens))
        self.stop.setEnabled(self.busy)
        self.dist.setEnabled(ready)
        self.tools_panel.set_ready(ready)
        self.json_dialog.buttons.button(QDialogButtonBox.StandardButton.Apply).setEnabled(ready)
        for a in (self.act_open, self.act_import, self.act_prepare, self.act_score, self.act_open_conv,
                  self.act_save_conv, self.act_reopen_last):
            a.setEnabled(not self.busy)
        self.act_export_table.setEnabled(has_doc)
        for b in (self.prepare_button, self.import_button, self.open_button, self.template_button):
            b.setEnabled(not self.busy)

    # -- positions, spans, candidates ------------------------------------------------------------
    def on_token_clicked(self, index: int) -> None:
        if not 0 <= index < len(self.state.tokens):
            return
        if self.span is not None:  # one chip now, not the span before it
            self.span = None
            self.surprise.set_selection(None, None)
        self.doc_view.select_token(index)
        self.surprise.set_current(index)
        self.show_position(index)
        self.update_span_label()

    def show_position(self, index: int | None) -> None:
        """Show the distribution at ``index`` (what predicted that token), or the next token's."""
        self.position = index
        self.ask_inside()
        self.ask_sampling()
        texts = self.texts
        if texts is None:
            return
        if index is None:
            self.doc_view.select_token(None)
            self.surprise.set_current(None)
            nxt = self._next_to_chart()
            self._fresh_next = None  # charted (or older than the state's own)
            if nxt is None:
                self.dist.set_distribution([], title="Next token")
                self.dist.set_footer("")
                self.dist_title.setText("Next token: the document is empty.")
                return
            k = self.k_spin.value()
            entries = [(i, texts(i).display, p) for i, p in zip(nxt.ids[:k], nxt.probs[:k])]
            sampled = dict(zip(nxt.ids[:k], nxt.sampled_probs[:k]))
            settings = self.current_settings()
            changed = settings != SamplingSettings(seed=settings.seed)
            self.dist.set_distribution(entries, sampled=sampled if changed else None, title="Next token")
            own = "" if not changed else (f" · bars after temperature {settings.temperature:g}, top-k "
                                          f"{settings.top_k or 'off'}, top-p {settings.top_p:g}; the model's own behind")
            self.dist.set_footer(f"entropy {nxt.entropy:.2f} bits · click a bar to append that token{own}")
            self.dist_title.setText("What the model expects after the last token")
            return
        tok = self.state.tokens[index]
        shown = texts(tok.id).display
        if tok.stats is None:
            self.dist.set_distribution([], title="")
            self.dist_title.setText(f"Position {index}, ‘{shown}’, is the first token: nothing predicted it.")
            return
        st = tok.stats
        k = self.k_spin.value()
        entries = [(i, texts(i).display, p) for i, p in zip(st.top_ids[:k], st.top_probs[:k])]
        extra = None if tok.id in st.top_ids[:k] else (tok.id, shown, st.prob, st.rank)
        self.dist.set_distribution(entries, highlight=tok.id, extra=extra, title=f"Position {index}")
        self.dist.set_footer(f"‘{shown}’: p = {format_prob(st.prob, st.bits)} · {st.bits:.2f} bits · "
                             f"rank {st.rank:,} · "
                             f"entropy {st.entropy:.2f} bits · {self.replace_hint(index)}")
        self.dist_title.setText(f"What the model predicted before ‘{shown}’ (position {index})")

    def replace_hint(self, index: int) -> str:
        after = len(self.state.tokens) - index - 1
        dropped = f" and drop the {after:,} token{'s' if after != 1 else ''} after it" if after else ""
        return f"click a bar to replace token {index}{dropped}"

    def on_candidate(self, token_id: int) -> None:
        if self.busy:
            self.show_error("The model is busy; wait a moment or press Stop.")
            return
        if self.position is None:
            self.send(AppendToken(token_id))
        else:
            self.send(Replace(self.position, token_id))
            self.position = None

    def on_span(self, start: int, stop: int) -> None:
        start, stop = max(0, start), min(len(self.state.tokens), stop)
        if stop <= start:
            return
        self.span = (start, stop)
        self.doc_view.select_span(start, stop)
        self.surprise.set_selection(start, stop)
        self.update_span_label()

    def on_selection_cleared(self) -> None:
        self.span = None
        self.surprise.set_selection(None, None)
        self.show_position(None)
        self.update_span_label()

    def update_span_label(self) -> None:
        big = int(BASE_POINT_SIZE * 1.25 * self.zoom)
        small = int(BASE_POINT_SIZE * 0.9 * self.zoom)
        tokens = self.state.tokens
        if self.span is None:
            name = "The replies" if self.replies_only() else "Whole document"
            whole = summarize(self._plot_values)  # the tokens in scope (summarize leaves out the Nones)
            if whole.tokens:
                self.span_label.setText(
                    f"<span style='font-size:{big}pt'>{name}: {whole.tokens:,} predicted tokens · "
                    f"{whole.total_bits:,.1f} bits · {whole.bits_per_token:.2f} bits/token · "
                    f"perplexity {whole.perplexity:,.2f}</span> — drag over tokens to measure a span"
                    f"<br><span style='font-size:{small}pt'>{reference_points(whole)}</span>")
            else:  # nothing predicted yet (a new conversation): no figures of an earlier document
                self.span_label.setText(SPAN_HINT)
            return
        a, b = self.span
        s = summarize([t.stats.bits for t in tokens[a:b] if t.stats is not None])
        self.span_label.setText(
            f"<span style='font-size:{big}pt'><b>Selected {b - a:,} tokens</b> (positions {a}–{b - 1}) · "
            f"<b>{s.total_bits:,.1f} bits</b> · {s.bits_per_token:.2f} bits/token · "
            f"perplexity {s.perplexity:,.2f}</span>"
            + (f"<br><span style='font-size:{small}pt'>{reference_points(s)}</span>" if s.tokens else ""))

    # -- looks --------------------------------------------------------------------------------------
    def apply_theme(self, theme: themes.Theme) -> None:
        self.theme = theme
        QApplication.instance().setPalette(themes.palette_for(theme))
        # the style draws input borders and check boxes a shade darker than the window: on
        # black, nothing. High contrast draws them in the text colour itself.
        QApplication.instance().setStyleSheet(themes.contrast_style_sheet(theme) if theme is themes.HIGH_CONTRAST else "")
        for w in (self.doc_view, self.dist, self.surprise, self.legend, self.sampling_view, self.inside_view,
                  self.compare_view):
            w.set_theme(theme)
        self.banner.setStyleSheet(
            f"QLabel {{ background: {theme.highlight.name()}; color: {themes.text_on(theme.highlight).name()}; "
            "padding: 6px; font-weight: bold; }")

    def set_zoom(self, zoom: float) -> None:
        self.zoom = max(0.6, min(zoom, 3.0))
        app = QApplication.instance()
        font = app.font()
        font.setPointSizeF(BASE_POINT_SIZE * self.zoom)
        app.setFont(font)
        if app.styleSheet():  # widgets under a style sheet keep the font they had until it is set again
            app.setStyleSheet(app.styleSheet())
            for w in (self.doc_view, self.dist, self.surprise, self.legend, self.sampling_view, self.inside_view,
                      self.compare_view):
                w.set_theme(self.theme)  # ... and lose their own palettes to it
        for w in (self.doc_view, self.dist, self.surprise, self.legend, self.sampling_view, self.inside_view,
                  self.compare_view):
            w.set_zoom(self.zoom)
        self.update_span_label()
        # the controls' new minimum width is known once Qt has re-laid them out
        QTimer.singleShot(0, self.fit_left_panel)

    def fit_left_panel(self) -> None:
        """Give the controls on the left at least the width they need at the
        current text size (no sideways scrolling), taking it from the
        document and the chart in proportion."""
        sizes = self.split.sizes()
        if len(sizes) != 3 or sum(sizes) <= 0 or self.split.widget(0).isHidden():
            return
        scroll = self.split.widget(0)
        bar = scroll.verticalScrollBar().sizeHint().width() if isinstance(scroll, QScrollArea) else 0
        need = self.left_panel.minimumSizeHint().width() + bar + 4
        left, centre, right = sizes
        if left >= need:
            return
        rest = max(sum(sizes) - need, 1)
        share = centre / max(centre + right, 1)
        self.split.setSizes([need, int(rest * share), rest - int(rest * share)])

    def size_file(self) -> Path | None:
        """Where the window's last size is kept (beside the kept document; none for tests and tools)."""
        return None if self.keep_last is None else self.keep_last.parent / "window-size.json"

    def remembered_size(self) -> tuple[int, int]:
        """The size the window had when it was last closed, else 1280 x 800."""
        path = self.size_file()
        try:
            data = json.loads(path.read_text(encoding="utf-8")) if path is not None else {}
            width, height = int(data["width"]), int(data["height"])
            if 400 <= width <= 20000 and 300 <= height <= 20000:
                return width, height
        except (OSError, ValueError, KeyError, TypeError):  # none yet, or damaged: the usual size
            pass
        return 1280, 800

    def remember_size(self) -> None:
        path = self.size_file()
        if path is None:
            return
        size = self.normalGeometry().size() if (self.isFullScreen() or self.isMaximized()) else self.size()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"width": size.width(), "height": size.height()}), encoding="utf-8")
        except OSError as exc:
            log.warning("the window's size could not be kept: %s", exc)

    def fit_screen(self) -> None:
        """The size of last time (1280 x 800 the first time), or the screen's
        free area where that is smaller (a 1024 x 768 projector): the chart,
        the Force box and the status bar stay on the screen."""
        width, height = self.remembered_size()
        screen = self.screen() or QApplication.primaryScreen()
        free = screen.availableGeometry() if screen is not None else None
        if free is None or free.width() <= 0:
            self.resize(width, height)
            return
        frame = max(0, self.frameGeometry().height() - self.geometry().height())
        self.resize(min(width, free.width()), min(height, free.height() - frame))
        self.move(free.topLeft())

    def show_controls(self, on: bool) -> None:
        """The panel on the left (system prompt, message, sampling), shown or folded away."""
        self.split.widget(0).setVisible(on)
        if on:
            QTimer.singleShot(0, self.fit_left_panel)

    def set_projector_mode(self, on: bool) -> None:
        """For the back of a lecture room: full screen, high contrast, large
        text, and the document and the chart given the whole width (the
        controls fold away; F9 brings them back, F11 ends projector mode)."""
        if on:
            self._before_projector = (self.zoom, self.act_contrast.isChecked(), self.act_controls.isChecked(),
                                      self.split.sizes())
            self.showFullScreen()
            self.act_contrast.setChecked(True)
            self.set_zoom(max(self.zoom, PROJECTOR_ZOOM))
            self.act_controls.setChecked(False)
            total = max(sum(self.split.sizes()), 1)
            self.split.setSizes([0, int(total * 0.6), total - int(total * 0.6)])
            self.status.setText("Projector mode: F9 shows the controls, F11 ends projector mode.")
        else:
            zoom, contrast, controls, sizes = getattr(self, "_before_projector", (1.0, False, True, None))
            self.showNormal()
            self.act_contrast.setChecked(contrast)
            self.set_zoom(zoom)
            self.act_controls.setChecked(controls)
            if sizes:
                self.split.setSizes(sizes)
            self.status.setText("")

    # -- closing ----------------------------------------------------------------------------------------
    SHUTDOWN_WAIT_MS = 10000  # how long closing waits for the worker to stop before keeping what was drawn

    def closeEvent(self, event) -> None:  # noqa: N802
        self._closing = True
        if self.act_projector.isChecked():
            self.act_projector.setChecked(False)  # the size kept is the window's own, not the projector's
        self.remember_size()
        self.client.shutdown(self.SHUTDOWN_WAIT_MS)
        self.keep_document()
        super().closeEvent(event)

    def draft(self) -> str | None:
        """What was typed and not yet read by the model: a message sent (the
        model was still reading it) and the message box."""
        parts = [t for t in (self._unsent, self.message.toPlainText()) if t and t.strip()]
        return "\n".join(parts) if parts else None

    def keep_document(self) -> None:
        """Closing never loses the work: the document, and a message typed
        but not yet read, are written to ``keep_last``, to be reopened from
        the File menu next time. Once the worker has stopped, its session is
        read (nobody else's then); if it has not stopped in time, the
        document as the window last drew it is written instead."""
        session = self.client.worker.session
        draft = self.draft()
        if self.keep_last is None or session is None or not (session.doc.tokens or draft):
            return
        try:
            self.keep_last.parent.mkdir(parents=True, exist_ok=True)
            if not self.client.thread.isRunning():
                conversation_file.save(session, self.keep_last, draft)
            elif self.info is not None:  # the worker is still busy: its session cannot be read safely
                log.warning("the worker did not stop in time; keeping the document as last drawn")
                doc = Document(list(self.state.tokens), list(self.state.segments))
                conversation_file.write(conversation_file.document_dict(
                    doc, self.info.tokenizer, self.info.name, self.info.vocab_size, self.state.system_prompt,
                    draft), self.keep_last)
        except (OSError, LmdeskError) as exc:
            log.warning("the conversation could not be kept: %s", exc)
