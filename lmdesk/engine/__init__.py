"""The engine of lmdesk: pure Python, never imports Qt nor the converter.

Loading model folders, KV-cached inference, statistics, sampling, chat
templates, the conversation and its document, edit operations and files;
testable without a display.
"""
