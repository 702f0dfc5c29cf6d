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
CHAT_TEMPLATE_FILE = "chat_template.jinja"
MANIFEST_FORMAT = "lmdesk-model"
MANIFEST_VERSION = 1
# Raised whenever the converter's output changes; the default model is
# prepared again when its folder was made by an older revision.
CONVERTER_REVISION = 9
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


def past_key(i: int) -> str:
    return PAST_KEY.format(i=i)


def past_value(i: int) -> str:
    return PAST_VALUE.format(i=i)


def present_key(i: int) -> str:
    return PRESENT_KEY.format(i=i)


def present_value(i: int) -> str:
    return PRESENT_VALUE.format(i=i)
