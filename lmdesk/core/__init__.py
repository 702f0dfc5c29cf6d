"""The engine of lmdesk: pure Python, never imports Qt.

Model import and loading, tokenizer, chat templates, inference and statistics
live here and are testable without a display.
"""
