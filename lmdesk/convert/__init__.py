"""The converter: GGUF files become lmdesk model folders.

Architectures, exact repacking of quantized weights, the ONNX graph and the
tokenizer rebuilt from GGUF metadata. The engine never imports this package;
only importing a model does (the command line, and the window's worker when it
prepares or imports a model).
"""
