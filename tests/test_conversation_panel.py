"""The tools panel and the conversation's JSON, as widgets: what is typed is
checked and sent on, wrong input is one sentence and sends nothing."""

from __future__ import annotations

import json

import pytest

from lmdesk.engine.conversation import Conversation, Message, ToolCall
from lmdesk.engine.paths import resources_dir
from lmdesk.ui.conversation_panel import ConversationJsonDialog, ToolsPanel


@pytest.fixture
def panel(qtbot):
    w = ToolsPanel()
    qtbot.addWidget(w)
    w.show()
    return w


def catch(signal) -> list:
    got: list = []
    signal.connect(lambda *a: got.append(a))
    return got


def test_the_examples_load_and_apply(panel) -> None:
    applied = catch(panel.toolsApplied)
    panel.set_open(True)
    panel.example_buttons[0].click()
    panel.apply.click()
    want = json.loads((resources_dir() / "examples" / "weather-tools.json").read_text(encoding="utf-8"))
    assert applied == [(tuple(want),)]
    panel.set_tools(applied[0][0])
    assert [panel.function.itemText(i) for i in range(panel.function.count())] == [
        "get_current_weather", "get_forecast"]
    panel.example_buttons[1].click()
    panel.apply.click()
    assert [t["function"]["name"] for t in applied[-1][0]] == ["find_students", "get_grades", "run_query"]


def test_wrong_definitions_are_one_sentence_and_send_nothing(panel) -> None:
    applied = catch(panel.toolsApplied)
    panel.definitions.setPlainText('[{"type": "function", "function": {"name": "f"}},')
    panel.apply.click()
    assert applied == [] and panel.problem.text().startswith("⚠ The tool definitions are not valid JSON (line 1")
    panel.definitions.setPlainText('[{"type": "function"}]')
    panel.apply.click()
    assert applied == [] and "is not a function definition" in panel.problem.text()


def test_a_call_is_checked_against_its_definition(panel) -> None:
    calls = catch(panel.callAdded)
    panel.definitions.setPlainText((resources_dir() / "examples" / "weather-tools.json").read_text(encoding="utf-8"))
    panel.set_tools(panel.parsed_tools())
    panel.function.setCurrentText("get_current_weather")
    panel.arguments.setText('{"unit": "celsius"}')
    panel.add_call.click()
    assert calls == [] and "lacks its required argument city" in panel.problem.text()
    panel.arguments.setText('{"city": "Lisbon", "unit": "kelvin"}')
    panel.add_call.click()
    assert calls == [] and "must be one of celsius, fahrenheit" in panel.problem.text()
    panel.arguments.setText('{"city": "Lisbon"')
    panel.add_call.click()
    assert calls == [] and "not valid JSON" in panel.problem.text()
    panel.arguments.setText('{"city": "Lisbon"}')
    panel.add_call.click()
    assert calls == [(ToolCall("get_current_weather", {"city": "Lisbon"}),)] and panel.problem.isHidden()


def test_a_result_answers_the_pending_call(panel) -> None:
    results = catch(panel.resultAdded)
    panel.add_result.click()
    assert results == [] and "empty" in panel.problem.text()
    panel.set_pending_call(ToolCall("get_forecast", {"city": "Oslo", "days": 2}))
    assert panel.body.isVisible() and 'get_forecast({"city": "Oslo", "days": 2})' in panel.problem.text()
    assert panel.add_result.text() == "Add the result of get_forecast"
    panel.result.setPlainText('{"days": ["rain", "sun"]}')
    panel.add_result.click()
    assert results == [('{"days": ["rain", "sun"]}', "get_forecast")]


def test_the_json_dialog_applies_opens_and_saves(qtbot, tmp_path) -> None:
    d = ConversationJsonDialog()
    qtbot.addWidget(d)
    applied = catch(d.applied)
    conv = Conversation((Message("user", "Weather in Oslo?"),
                         Message("assistant", "", (ToolCall("get_forecast", {"city": "Oslo", "days": 1}),)),
                         Message("tool", '{"sky": "rain"}', name="get_forecast")))
    d.set_conversation(conv)
    assert json.loads(d.editor.toPlainText())["messages"][1]["tool_calls"][0]["function"]["arguments"] == {
        "city": "Oslo", "days": 1}
    d.do_apply()
    assert applied == [(conv,)]
    d.editor.setPlainText('{"messages": [{"role": "robot", "content": "hi"}]}')
    d.do_apply()
    assert len(applied) == 1 and "role 'robot'" in d.problem.text()
    d.set_conversation(conv)
    d.save_path(tmp_path / "c.json")
    assert Conversation.from_json((tmp_path / "c.json").read_text(encoding="utf-8")) == conv
    (tmp_path / "bad.json").write_bytes(b"\xff\xfe not text")
    d.open_path(tmp_path / "bad.json")
    assert "cannot be read as UTF-8 text" in d.problem.text()
    d.editor.setPlainText("")
    d.open_path(tmp_path / "c.json")
    assert Conversation.from_json(d.editor.toPlainText()) == conv and d.problem.isHidden()
