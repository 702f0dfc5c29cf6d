"""Qt widgets that render the core's state and emit user intents."""
