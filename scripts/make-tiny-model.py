"""Builds a tiny model from a config, with a tokenizer trained locally, and saves both with save_pretrained,
so `from_pretrained(DIR)` works without any download. Tests and the local rehearsal train these.

    python scripts/make-tiny-model.py --family causal-lm --out /tmp/tiny-qwen2
    python scripts/make-tiny-model.py --family seq2seq --out /tmp/tiny-t5

causal-lm: a Qwen2 config (2 layers, hidden 64) with a ChatML chat template, eos <|im_end|>, pad <|endoftext|>.
seq2seq:   a T5 config (2+2 layers, d_model 64), eos </s>, pad <pad>, decoder start = pad.
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_WORDS = (
    "the a participant study answer question response scale trust fairness risk reward money vote policy "
    "group choice offer accept reject cooperate partner round payoff predict model behavior age condition "
    "scenario demographics category world sports business science technology news article classify"
).split()


def _corpus(lines: int = 3000, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(lines):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(5, 30))]
        out.append(" ".join(words) + f" {rng.randint(0, 100)}. Response: {rng.randint(1, 7)} {{\"category\":\"World\"}}")
    return out


def build_tokenizer(special: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return tok


def make_causal(out: Path) -> None:
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    raw = build_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>"], vocab_size=512)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|im_end|>", pad_token="<|endoftext|>", model_max_length=512)
    tokenizer.chat_template = CHAT_TEMPLATE
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
    )
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def make_seq2seq(out: Path) -> None:
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration
    from tokenizers import processors

    raw = build_tokenizer(["<pad>", "</s>", "<unk>"], vocab_size=512)
    raw.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", raw.token_to_id("</s>"))])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="</s>", pad_token="<pad>", unk_token="<unk>", model_max_length=512)
    config = T5Config(
        vocab_size=len(tokenizer), d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4,
        feed_forward_proj="gated-gelu", tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id,
    )
    model = T5ForConditionalGeneration(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", choices=["causal-lm", "seq2seq"], required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import torch

    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    (make_causal if args.family == "causal-lm" else make_seq2seq)(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
