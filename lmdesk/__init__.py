"""lmdesk: look inside a small language model running on your own CPU."""

__version__ = "0.1.0"
