"""Tool calling and the conversation as JSON, in the window.

:class:`ToolsPanel` (folds away under the message box) holds the tool
definitions as editable JSON, with two examples to load; "Add tool call"
puts a call of one of them into the conversation (its arguments checked
against the definition), "Add tool result" answers it as the tool would.
When the model itself wrote a call, the panel says so and offers to add the
result: the agent loop, by hand.

:class:`ConversationJsonDialog` shows the whole conversation (messages and
tools) as JSON to read, edit and apply, or to open and save as ``.json``.

Both only parse and check what is typed (with :mod:`lmdesk.engine.conversation`
and :mod:`lmdesk.engine.tools`) and send it on; rendering and the model
are the worker's.
"""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont, QFontDatabase
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..engine.conversation import Conversation, ConversationError, ToolCall, arguments_object, tools_list
from ..engine.errors import LmdeskError
from ..engine.paths import resources_dir
from ..engine.tools import check_call

EXAMPLES = (("Weather example", "weather-tools.json"), ("Class database example", "class-database-tools.json"))


def example_tools(file_name: str) -> str:
    """The JSON text of an example tool set from resources/examples."""
    return (resources_dir() / "examples" / file_name).read_text(encoding="utf-8")


def _mono() -> QFont:
    return QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)


class ToolsPanel(QWidget):
    """Tool definitions, tool calls and tool results, folded away until opened."""

    opened = Signal(bool)  # noqa: N815 - the panel unfolded or folded (the side panel may need more room)
    toolsApplied = Signal(object)  # noqa: N815 - a tuple of definitions (dicts); () to remove them
    callAdded = Signal(object)  # noqa: N815 - a ToolCall
    resultAdded = Signal(str, str)  # noqa: N815 - the result's text, the function's name ("" if not known)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.applied: tuple[dict, ...] = ()  # the definitions the conversation has
        self.pending: ToolCall | None = None  # a call waiting for its result
        v = QVBoxLayout(self)
        v.setContentsMargins(0, 0, 0, 0)
        self.toggle = QToolButton()
        self.toggle.setText("Tools (function calling)")
        self.toggle.setCheckable(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.toggle.setToolTip("Give the model tools, add a tool call and its result: the agent loop by hand")
        v.addWidget(self.toggle)
        self.body = QWidget()
        b = QVBoxLayout(self.body)
        b.setContentsMargins(0, 0, 0, 0)
        self.support = QLabel()
        self.support.setWordWrap(True)
        b.addWidget(self.support)
        b.addWidget(QLabel("Tool definitions (a JSON array)"))
        self.definitions = QPlainTextEdit()
        self.definitions.setFont(_mono())
        self.definitions.setPlaceholderText('[{"type": "function", "function": {"name": "...", "parameters": {...}}}]')
        self.definitions.setMinimumHeight(90)
        b.addWidget(self.definitions, 1)
        examples = QVBoxLayout()  # one above the other: the side panel is narrow
        self.example_buttons = []
        for label, file_name in EXAMPLES:
            button = QPushButton(label)
            button.setToolTip(f"Put the {label.lower()} in the box (then Apply tools)")
            button.clicked.connect(lambda _=False, f=file_name: self.definitions.setPlainText(example_tools(f)))
            examples.addWidget(button)
            self.example_buttons.append(button)
        b.addLayout(examples)
        row = QHBoxLayout()
        self.apply = QPushButton("Apply tools")
        self.apply.setToolTip("Give the conversation these tool definitions (the template writes them in)")
        self.remove = QPushButton("Remove tools")
        row.addWidget(self.apply)
        row.addWidget(self.remove)
        b.addLayout(row)

        b.addWidget(QLabel("Add a tool call (as if the assistant made it)"))
        call = QHBoxLayout()
        self.function = QComboBox()
        self.function.setEditable(True)
        self.function.setToolTip("The function to call: one of the definitions")
        call.addWidget(self.function, 1)
        b.addLayout(call)
        self.arguments = QLineEdit()
        self.arguments.setFont(_mono())
        self.arguments.setPlaceholderText('arguments as JSON, e.g. {"city": "Lisbon"}')
        b.addWidget(self.arguments)
        self.add_call = QPushButton("Add tool call")
        b.addWidget(self.add_call)
        b.addWidget(QLabel("Add a tool result (what the tool answered)"))
        self.result = QPlainTextEdit()
        self.result.setFont(_mono())
        self.result.setPlaceholderText('e.g. {"temperature": 18, "sky": "sunny"}')
        self.result.setFixedHeight(60)
        b.addWidget(self.result)
        self.add_result = QPushButton("Add tool result")
        b.addWidget(self.add_result)
        self.problem = QLabel()
        self.problem.setWordWrap(True)
        self.problem.setVisible(False)
        b.addWidget(self.problem)
        v.addWidget(self.body)
        self.body.setVisible(False)

        self.toggle.toggled.connect(self.set_open)
        self.apply.clicked.connect(self.do_apply)
        self.remove.clicked.connect(lambda: self.toolsApplied.emit(()))
        self.add_call.clicked.connect(self.do_add_call)
        self.add_result.clicked.connect(self.do_add_result)
        self.set_support(None)

    # -- state from the window ------------------------------------------------------------
    def set_open(self, on: bool) -> None:
        self.toggle.setChecked(on)
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)
        if self.body.isHidden() == on:
            self.body.setVisible(on)
            self.opened.emit(on)

    def set_tools(self, tools: tuple[dict, ...]) -> None:
        """The definitions the conversation now has (shown in the box unless it is being edited)."""
        self.applied = tuple(tools)
        if not self.definitions.hasFocus():
            self.definitions.setPlainText(json.dumps(list(tools), indent=2, ensure_ascii=False) if tools else "")
        names = [t.get("function", t).get("name", "") for t in tools]
        current = self.function.currentText()
        self.function.clear()
        self.function.addItems([n for n in names if n])
        if current:
            self.function.setCurrentText(current)
        self.toggle.setText(f"Tools (function calling): {len(tools)}" if tools else "Tools (function calling)")

    def set_support(self, text: str | None) -> None:
        """How the model's template writes tools: None before a model is loaded."""
        self.support.setText(text or "")
        self.support.setVisible(bool(text))

    def set_pending_call(self, call: ToolCall | None) -> None:
        """A call the model wrote that has no result yet: offer to add it."""
        self.pending = call
        if call is None:
            self.add_result.setText("Add tool result")
            return
        args = json.dumps(dict(call.arguments), ensure_ascii=False)
        self.add_result.setText(f"Add the result of {call.name}")
        self.say(f"The model called {call.name}({args}). Run it yourself, type what it would answer, and add "
                 "the result: then Generate lets the model use it.", problem=False)
        self.set_open(True)

    def set_ready(self, ready: bool) -> None:
        for w in (self.apply, self.remove, self.add_call, self.add_result):
            w.setEnabled(ready)

    def say(self, text: str, problem: bool = True) -> None:
        self.problem.setText(("⚠ " if problem else "") + text)
        self.problem.setVisible(bool(text))

    # -- what is typed ---------------------------------------------------------------------
    def parsed_tools(self) -> tuple[dict, ...]:
        """The definitions typed in the box; :class:`ConversationError` if they are not valid."""
        text = self.definitions.toPlainText().strip()
        if not text:
            return ()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConversationError(f"The tool definitions are not valid JSON (line {exc.lineno}, column "
                                    f"{exc.colno}: {exc.msg}).") from None
        return tools_list(data)

    def do_apply(self) -> None:
        try:
            tools = self.parsed_tools()
        except LmdeskError as exc:
            self.say(str(exc))
            return
        self.say("")
        self.toolsApplied.emit(tools)

    def do_add_call(self) -> None:
        name = self.function.currentText().strip()
        if not name:
            self.say("Choose the function to call (Apply tools first to have them listed).")
            return
        text = self.arguments.text().strip() or "{}"
        try:
            arguments = arguments_object(text, name)
            call = ToolCall(name, arguments)
            check_call(call, self.applied)
        except LmdeskError as exc:
            self.say(str(exc))
            return
        self.say("")
        self.callAdded.emit(call)

    def do_add_result(self) -> None:
        text = self.result.toPlainText()
        if not text.strip():
            self.say("The result is empty: type what the tool answered.")
            return
        self.say("")
        self.resultAdded.emit(text, self.pending.name if self.pending is not None else "")


class ConversationJsonDialog(QDialog):
    """The whole conversation as JSON: read it, change it, apply it; open or save a ``.json``."""

    applied = Signal(object)  # a Conversation

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Conversation as JSON")
        self.resize(720, 560)
        v = QVBoxLayout(self)
        intro = QLabel("The conversation is data: messages (system, user, assistant with tool calls, tool results) "
                       "and tool definitions. The chat template turns it into the document's tokens. Change it "
                       "here and Apply: the model reads again from the first token that changed.")
        intro.setWordWrap(True)
        v.addWidget(intro)
        self.editor = QPlainTextEdit()
        self.editor.setFont(_mono())
        v.addWidget(self.editor, 1)
        self.problem = QLabel()
        self.problem.setWordWrap(True)
        self.problem.setVisible(False)
        v.addWidget(self.problem)
        row = QHBoxLayout()
        self.open_button = QPushButton("Open .json…")
        self.save_button = QPushButton("Save .json…")
        row.addWidget(self.open_button)
        row.addWidget(self.save_button)
        row.addStretch(1)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Apply | QDialogButtonBox.StandardButton.Close)
        row.addWidget(self.buttons)
        v.addLayout(row)
        self.buttons.button(QDialogButtonBox.StandardButton.Apply).clicked.connect(self.do_apply)
        self.buttons.rejected.connect(self.reject)
        self.open_button.clicked.connect(self.do_open)
        self.save_button.clicked.connect(self.do_save)

    def set_conversation(self, conversation: Conversation) -> None:
        self.editor.setPlainText(conversation.to_json())
        self.say("")

    def say(self, text: str) -> None:
        self.problem.setText(f"⚠ {text}" if text else "")
        self.problem.setVisible(bool(text))

    def parsed(self) -> Conversation:
        return Conversation.from_json(self.editor.toPlainText())

    def do_apply(self) -> None:
        try:
            conversation = self.parsed()
        except LmdeskError as exc:
            self.say(str(exc))
            return
        self.say("")
        self.applied.emit(conversation)

    def do_open(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a conversation (JSON)", "", "JSON (*.json);;All files (*)")
        if path:
            self.open_path(Path(path))

    def open_path(self, path: Path) -> None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self.say(f"{path.name} cannot be read as UTF-8 text ({exc}).")
            return
        try:
            conversation = Conversation.from_json(text, where=path.name)
        except LmdeskError as exc:
            self.say(str(exc))
            return
        self.set_conversation(conversation)

    def do_save(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the conversation (JSON)", "conversation.json",
                                              "JSON (*.json)")
        if path:
            self.save_path(Path(path))

    def save_path(self, path: Path) -> None:
        try:
            conversation = self.parsed()
        except LmdeskError as exc:
            self.say(str(exc))
            return
        try:
            tmp = path.with_name(path.name + ".part")
            tmp.write_text(conversation.to_json() + "\n", encoding="utf-8")
            tmp.replace(path)
        except OSError as exc:
            self.say(f"The conversation could not be saved to {path} ({exc.strerror or exc}).")
            return
        self.say("")
