"""The names an lmdesk model folder is made of, shared by the converter that
writes it (:mod:`lmdesk.convert`) and the engine that reads it.

Only names and numbers live here, so that loading a model never imports the
converter (nor ``onnx`` or ``gguf``).
"""

from __future__ import annotations

MANIFEST = "manifest.json"
MODEL_FILE = "model.onnx"
# The weights live beside the graph: onnxruntime maps this file into memory
# instead of parsing it (measured on the default model: resident memory after
# loading 436 → 305 MB, peak after a 1,000-token prefill 550 → 498 MB).
WEIGHTS_FILE = "model.onnx.data"
TOKENIZER_FILE = "tokenizer.json"
# The inspection graph (see lmdesk.convert.onnx_decoder.build_graphs): the
# decoder with the residual stream, the logit lens and the attention weights
# of one position as outputs; it shares model.onnx.data and runs only when asked.
INSPECT_FILE = "inspect.onnx"
CHAT_TEMPLATE_FILE = "chat_template.jinja"
MANIFEST_FORMAT = "lmdesk-model"
MANIFEST_VERSION = 1
# Raised whenever the converter's output changes; the default model is
# prepared again when its folder was made by an older revision.
CONVERTER_REVISION = 10  # 10: the inspection graph, inspect.onnx
# End-of-turn markers of well-known chat templates, stops besides the eos id.
KNOWN_END_OF_TURN = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "</s>", "<|eom_id|>")

# The decoder graph's inputs and outputs (see lmdesk.convert.onnx_decoder).
INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
POSITION_IDS = "position_ids"
LOGITS = "logits"
PAST_KEY = "past_key_values.{i}.key"
PAST_VALUE = "past_key_values.{i}.value"
PRESENT_KEY = "present.{i}.key"
PRESENT_VALUE = "present.{i}.value"
# The inspection graph's outputs, for the last position of its input:
# the residual after the embeddings and after every block [n_layer + 1, d_model],
# the output head applied to the residual after every block [n_layer, vocab]
# (the last row: the model's own logits) and every layer's attention weights
# over the keys [n_layer, n_head, total_seq].
INSPECT_HIDDEN = "inspect.hidden"
INSPECT_LENS = "inspect.lens_logits"
INSPECT_ATTENTION = "inspect.attention"


def past_key(i: int) -> str:
    return PAST_KEY.format(i=i)


def past_value(i: int) -> str:
    return PAST_VALUE.format(i=i)


def present_key(i: int) -> str:
    return PRESENT_KEY.format(i=i)


def present_value(i: int) -> str:
    return PRESENT_VALUE.format(i=i)
