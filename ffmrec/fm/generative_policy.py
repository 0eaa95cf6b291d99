"""The ``generative`` policy of FedTREK-LM: a causal LM (Qwen3 family, or any transformers causal LM, from a local
folder; or a tiny random Qwen3 built offline for tests) with LoRA adapters through PEFT, fine-tuned with TRL's
``KTOTrainer``, recommending by writing a bulleted list of ``Title (Year)`` lines.

* Prompts are the chat messages of :func:`ffmrec.data.redial_examples.render_prompt`, rendered with the tokenizer's
  chat template *before* TRL sees them (``enable_thinking=False`` for Qwen3, so no ``<think>`` block is ever
  generated or trained on); completions end with the end-of-sequence token. Lengths are explicit: ``max_length``
  (prompt + completion) is checked on every record, and a record that would not fit is an error, never truncated.
* KTO (desirable:undesirable 4:3 by default) through ``KTOTrainer`` with the PEFT model and no separate reference
  model: TRL then scores the reference with the adapters disabled, i.e. the frozen base. Between federated rounds the
  global adapters are loaded into the trainable adapter, so the reference stays the base in every round and on every
  client (the reference is never a previous round's adapter).
* Recommendations: greedy decoding, the bulleted list parsed (:func:`ffmrec.eval.setmetrics.parse_bulleted`) and
  resolved exactly to catalogue ids (:class:`ffmrec.eval.setmetrics.TitleIndex`); an unparseable output is ``None``
  and scores 0.
* ``load_in_4bit`` loads the base quantized with bitsandbytes (needs a GPU and the package; optional).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ffmrec.errors import ConfigError
from ffmrec.eval.setmetrics import TitleIndex, parse_bulleted
from ffmrec.fm.payload import REFERENCE_TARGETS

#: A Qwen3-style chat template (ChatML, with the empty think block Qwen3 writes when thinking is disabled).
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}")


@dataclass
class GenerativePolicyConfig:
    """The causal LM, its LoRA adapters and TRL's KTO settings."""

    path: str | None = field(default=None, metadata={"help": "A local causal-LM folder (e.g. Qwen3-0.6B); null builds a tiny random Qwen3 offline (tests)."})
    hidden_size: int = field(default=32, metadata={"help": "Hidden width of the tiny random Qwen3 (path null)."})
    num_layers: int = field(default=2, metadata={"help": "Blocks of the tiny random Qwen3."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank (the reference: 16)."})
    lora_alpha: float = field(default=64.0, metadata={"help": "LoRA alpha (the reference: 64)."})
    lora_target_modules: tuple[str, ...] = field(default=REFERENCE_TARGETS, metadata={"help": "Modules with adapters (the reference: q,k,v,o,gate,up,down projections)."})
    load_in_4bit: bool = field(default=False, metadata={"help": "Load the base in 4 bits (bitsandbytes, GPU only)."})
    max_length: int = field(default=1024, metadata={"help": "Longest prompt + completion in tokens; a longer record is an error, never truncated."})
    max_new_tokens: int = field(default=64, metadata={"help": "Tokens generated per recommendation (greedy)."})
    beta: float = field(default=0.1, metadata={"help": "KTO beta."})
    desirable_weight: float = field(default=4.0, metadata={"help": "KTO lambda_D."})
    undesirable_weight: float = field(default=3.0, metadata={"help": "KTO lambda_U."})

    def __post_init__(self) -> None:
        if self.path is not None and not Path(self.path).is_dir():
            raise ConfigError(f"model.path={self.path!r} is not a folder: give a local causal-LM folder or null.")
        if min(self.hidden_size, self.num_layers, self.lora_r, self.max_length, self.max_new_tokens) < 1:
            raise ConfigError("model.hidden_size, num_layers, lora_r, max_length and max_new_tokens must be >= 1.")


def tiny_tokenizer():
    """A character-level fast tokenizer with Qwen3's chat special tokens, built offline (for the tiny random model)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = [chr(c) for c in range(32, 127)] + ["\n"]
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>", "<unk>"]
    vocab = {t: i for i, t in enumerate(specials + chars)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tok.add_special_tokens(specials)
    out = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  unk_token="<unk>")
    out.chat_template = CHAT_TEMPLATE
    return out


class GenerativePolicy:
    """See the module docstring."""

    def __init__(self, config: GenerativePolicyConfig, seed: int = 0):
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen3Config

        self.config = config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if config.path is None:
                self.tokenizer = tiny_tokenizer()
                n = len(self.tokenizer)
                base = AutoModelForCausalLM.from_config(Qwen3Config(
                    vocab_size=n, hidden_size=config.hidden_size, intermediate_size=2 * config.hidden_size,
                    num_hidden_layers=config.num_layers, num_attention_heads=2, num_key_value_heads=2,
                    head_dim=config.hidden_size // 2, max_position_embeddings=max(config.max_length, 64),
                    pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id,
                    tie_word_embeddings=True), dtype=torch.float32)
            else:
                self.tokenizer = AutoTokenizer.from_pretrained(config.path, local_files_only=True)
                kwargs = {}
                if config.load_in_4bit:
                    from transformers import BitsAndBytesConfig

                    kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True)
                base = AutoModelForCausalLM.from_pretrained(config.path, local_files_only=True, **kwargs)
            if self.tokenizer.pad_token is None:
                self.tokenizer.pad_token = self.tokenizer.eos_token
            torch.manual_seed(seed + 1)
            self.model = get_peft_model(base, LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha,
                                                         target_modules=list(config.lora_target_modules),
                                                         task_type="CAUSAL_LM"))

    def render(self, messages: Sequence[dict]) -> str:
        """The prompt text: the chat template with the generation prompt, thinking disabled."""
        return self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True,
                                                  enable_thinking=False)

    def records(self, prompts: Sequence[Sequence[dict]], completions: Sequence[str], labels: Sequence[bool]) -> list[dict]:
        """KTO records ``{"prompt", "completion", "label"}`` (text), each checked against ``max_length``."""
        out = []
        for messages, completion, label in zip(prompts, completions, labels):
            prompt = self.render(messages)
            completion = completion + self.tokenizer.eos_token
            n = len(self.tokenizer(prompt + completion, add_special_tokens=False)["input_ids"])
            if n > self.config.max_length:
                raise ValueError(f"a KTO record of {n} tokens exceeds model.max_length={self.config.max_length}: "
                                 "raise it or shorten the prompt budget (records are never truncated)")
            out.append({"prompt": prompt, "completion": completion, "label": bool(label)})
        return out

    def kto_train(self, records: list[dict], steps: int, lr: float, batch_size: int = 4, seed: int = 0) -> float:
        """``steps`` KTO steps with TRL's KTOTrainer on ``records``; returns the last training loss."""
        from datasets import Dataset
        from trl import KTOConfig, KTOTrainer

        c = self.config
        with tempfile.TemporaryDirectory() as out:
            args = KTOConfig(output_dir=out, use_cpu=not torch.cuda.is_available(), bf16=False, max_steps=steps,
                             per_device_train_batch_size=batch_size, learning_rate=lr, lr_scheduler_type="constant",
                             beta=c.beta, desirable_weight=c.desirable_weight, undesirable_weight=c.undesirable_weight,
                             max_length=c.max_length, disable_dropout=True, report_to=[], save_strategy="no",
                             logging_steps=1, seed=seed, dataloader_num_workers=0)
            trainer = KTOTrainer(model=self.model, args=args, train_dataset=Dataset.from_list(records),
                                 processing_class=self.tokenizer)
            result = trainer.train()
        return float(result.training_loss)

    @torch.no_grad()
    def generate(self, prompts: Sequence[Sequence[dict]]) -> list[str]:
        """Greedy completions of chat prompts."""
        self.model.eval()
        texts = []
        for messages in prompts:
            batch = self.tokenizer(self.render(messages), return_tensors="pt", add_special_tokens=False)
            out = self.model.generate(**batch, max_new_tokens=self.config.max_new_tokens, do_sample=False,
                                      pad_token_id=self.tokenizer.pad_token_id)
            texts.append(self.tokenizer.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True))
        return texts

    def recommend(self, prompts: Sequence[Sequence[dict]], index: TitleIndex) -> list[list[str | None] | None]:
        """Per prompt: the resolved ids of the generated bulleted list (None = unparseable; None items = titles that
        match no movie exactly)."""
        out = []
        for text in self.generate(prompts):
            items = parse_bulleted(text)
            out.append(None if items is None else index.resolve(items))
        return out
