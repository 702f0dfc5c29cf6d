"""Tools in the window: definitions, a tool call, its result and the next
reply, through the real worker and the tiny model's template (which has no
tool format: lmdesk's labelled fallback writes them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmdesk.engine.conversation import Conversation, Message, ToolCall
from lmdesk.engine.document import TOOL_CALL
from lmdesk.engine.paths import resources_dir
from window_driver import end_turn, idle, open_window, run_op, tiny_model


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return tiny_model(tmp_path_factory, "tools", ctx=4096)


@pytest.fixture
def win(qtbot, tiny_dir):
    w = open_window(qtbot, tiny_dir)
    yield w
    w.close()


def test_the_agent_loop_by_hand(qtbot, win) -> None:
    end_turn(qtbot, win, "What is the weather in Lisbon?")
    panel = win.tools_panel
    panel.set_open(True)
    panel.example_buttons[0].click()
    run_op(qtbot, win, panel.apply.click, "set_tools")
    weather = json.loads((resources_dir() / "examples" / "weather-tools.json").read_text(encoding="utf-8"))
    assert panel.applied == tuple(weather)
    assert "no format for tools" in panel.support.text()
    assert "get_current_weather" in win.client.worker.session.text()  # the fallback wrote them in
    panel.function.setCurrentText("get_current_weather")
    panel.arguments.setText('{"city": "Lisbon"}')
    run_op(qtbot, win, panel.add_call.click, "add_tool_call")
    panel.result.setPlainText('{"temperature": 21, "sky": "sunny"}')
    run_op(qtbot, win, panel.add_result.click, "add_tool_result")
    # the conversation as data, read back from the document's tokens
    win.open_json()
    qtbot.waitUntil(lambda: win.json_dialog.editor.toPlainText() != "", timeout=10_000)
    conv = Conversation.from_json(win.json_dialog.editor.toPlainText())
    roles = [m.role for m in conv.messages]
    assert roles == ["user", "assistant", "tool", "assistant"]  # the last: the reply the result opened
    assert conv.messages[1].tool_calls == (ToolCall("get_current_weather", {"city": "Lisbon"}),)
    assert conv.messages[2].content == '{"temperature": 21, "sky": "sunny"}'
    assert conv.messages[2].name == "get_current_weather" and conv.messages[3].content == ""
    assert conv.tools == tuple(weather)
    # the reply after the result is open: the model can be asked to use it
    assert win.state.response_start == len(win.state.tokens)
    labels = [win.doc_view.role_label(a, b) for a, b, _ in win.doc_view._runs]
    assert "assistant · tool call" in labels and "tool result · get_current_weather" in labels
    assert any(t.kind == TOOL_CALL for t in win.state.tokens)


def test_the_json_window_applies_an_edited_conversation(qtbot, win) -> None:
    end_turn(qtbot, win, "hello there")
    win.open_json()
    qtbot.waitUntil(lambda: win.json_dialog.editor.toPlainText() != "", timeout=10_000)
    conv = Conversation.from_json(win.json_dialog.editor.toPlainText())
    assert [(m.role, m.content) for m in conv.messages] == [("user", "hello there"), ("assistant", "")]
    edited = Conversation((Message("user", "hello again"),), conv.tools)
    win.json_dialog.set_conversation(edited)
    run_op(qtbot, win, win.json_dialog.do_apply, "apply_conversation")
    idle(qtbot, win)
    assert win.client.worker.session.messages() == [Message("user", "hello again"), Message("assistant", "")]
    assert win.state.response_start == len(win.state.tokens)  # the reply to it is open
    qtbot.waitUntil(lambda: Conversation.from_json(win.json_dialog.editor.toPlainText()).messages[0].content
                    == "hello again", timeout=10_000)
    win.json_dialog.editor.setPlainText('{"messages": []')
    win.json_dialog.do_apply()
    assert "not valid JSON" in win.json_dialog.problem.text()
    assert win.client.worker.session.messages()[0] == Message("user", "hello again")  # nothing lost


def test_a_call_the_model_writes_is_offered_a_result(qtbot, win) -> None:
    """The reply holds a call in the fallback's format (forced here, as the
    tiny model would not write one): the panel offers its result, and adding
    it makes the call a tool-call message."""
    end_turn(qtbot, win, "Weather in Oslo?")
    win.force_edit.setText('<tool_call>{"name": "get_current_weather", "arguments": {"city": "Oslo"}}</tool_call>')
    run_op(qtbot, win, win.force.click, "replace_text")
    panel = win.tools_panel
    assert panel.pending == ToolCall("get_current_weather", {"city": "Oslo"})
    assert panel.body.isVisible() and "The model called get_current_weather" in panel.problem.text()
    labels = [win.doc_view.role_label(a, b) for a, b, _ in win.doc_view._runs]
    assert labels[-1] == "assistant · wrote a tool call: get_current_weather (add its result in Tools)"
    panel.result.setPlainText("rain, 9 degrees")
    run_op(qtbot, win, panel.add_result.click, "add_tool_result")
    msgs = win.client.worker.session.messages()
    assert [m.role for m in msgs] == ["user", "assistant", "tool", "assistant"]
    assert msgs[1].tool_calls == (ToolCall("get_current_weather", {"city": "Oslo"}),) and msgs[1].content == ""
    assert msgs[2] == Message("tool", "rain, 9 degrees", name="get_current_weather")
    assert panel.pending is None
