"""Chat formats of the well-known model families, for a model whose file
carries no chat template (Gemma 3 270M, a base model, has none).

Each is lmdesk's own jinja2 rendering of the turn markers the family's
instruct models were trained with, as their model cards describe them; it is
offered only when the model's vocabulary holds every marker as one token.

* ``gemma``: ``<start_of_turn>user`` … ``<end_of_turn>``, the reply as
  ``model``; no system role (a system message goes before the first user
  message, separated by a blank line).
* ``chatml`` (Qwen, SmolLM): ``<|im_start|>role`` … ``<|im_end|>``.
* ``llama3``: ``<|start_header_id|>role<|end_header_id|>`` and a blank line,
  each turn closed by ``<|eot_id|>``.
* ``phi3``: ``<|role|>`` on its own line, each turn closed by ``<|end|>``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class FamilyTemplate:
    name: str
    label: str  # as the window names it
    markers: tuple[str, ...]  # tokens the vocabulary must hold
    source: str  # jinja2, rendered like any chat template
    architectures: tuple[str, ...]  # the GGUF architectures it is first offered for


GEMMA = FamilyTemplate(
    "gemma", "Gemma", ("<start_of_turn>", "<end_of_turn>"),
    "{{ bos_token }}"
    "{% set ns = namespace(system='') %}"
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{% set ns.system = m['content'] + '\n\n' %}"
    "{% else %}"
    "{{ '<start_of_turn>' + ('model' if m['role'] == 'assistant' else 'user') + '\n' }}"
    "{% if m['role'] == 'user' %}{{ ns.system }}{% set ns.system = '' %}{% endif %}"
    "{{ m['content'] + '<end_of_turn>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}",
    ("gemma", "gemma2", "gemma3"),
)
CHATML = FamilyTemplate(
    "chatml", "ChatML (Qwen, SmolLM)", ("<|im_start|>", "<|im_end|>"),
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
    ("qwen2", "qwen3", "llama"),
)
LLAMA3 = FamilyTemplate(
    "llama3", "Llama 3", ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
    "{{ bos_token }}"
    "{% for m in messages %}"
    "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' + m['content'] + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}",
    ("llama",),
)
PHI3 = FamilyTemplate(
    "phi3", "Phi-3", ("<|user|>", "<|assistant|>", "<|end|>"),
    "{% for m in messages %}{{ '<|' + m['role'] + '|>\n' + m['content'] + '<|end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}",
    ("phi3",),
)
FAMILIES = (GEMMA, CHATML, LLAMA3, PHI3)


def suggest(architecture: str, is_token: Callable[[str], bool]) -> FamilyTemplate | None:
    """The family format for a model of ``architecture`` whose vocabulary holds
    its markers (``is_token(text)``): the architecture's own family first."""
    ordered = sorted(FAMILIES, key=lambda f: architecture not in f.architectures)
    for family in ordered:
        if all(is_token(m) for m in family.markers):
            return family
    return None


def by_name(name: str) -> FamilyTemplate:
    for family in FAMILIES:
        if family.name == name:
            return family
    raise KeyError(name)
