"""Qt widgets that render the engine's state and emit user intents."""
