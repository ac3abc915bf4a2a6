"""The synthetic fallback model: the configured RoBERTa architecture with seeded random weights,
a byte-level BPE tokenizer trained on the bundled corpus, and a head fitted so that its answers
depend on the text (docs/model.md, "Synthetic model")."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("servebench.model")


# Random encoders give nearly the same [CLS] representation to every text, so a random head
# puts every text in the same class by a constant margin: a fidelity check on that is vacuous.
# The synthetic head's output layer is therefore fitted (deterministically) to the corpus: an
# ordinal head on the first principal component of the head's features, with balanced labels
# and margins that vary from text to text as with real weights (see `fit_synthetic_head`).
SYNTHETIC_HEAD_GAIN = 4.0


SYNTHETIC_HEAD_TEXTS = 256


SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # RoBERTa's ids 0..4


def train_bpe(
    texts: Sequence[str], vocab_size: int, min_frequency: int = 2
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Byte-level BPE vocabulary and merges learned from `texts`, deterministically.

    The `tokenizers` trainer breaks ties between equally frequent pairs in hash-map order, so
    two processes can learn different merges from the same corpus; here ties go to the
    lexicographically smallest pair. Stops at `vocab_size` tokens or when no pair occurs
    `min_frequency` times.
    """
    import heapq
    from collections import Counter, defaultdict

    from tokenizers.pre_tokenizers import ByteLevel

    pre_tokenizer = ByteLevel(add_prefix_space=False, use_regex=True)
    word_counts: Counter[str] = Counter()
    for text in texts:
        word_counts.update(piece for piece, _ in pre_tokenizer.pre_tokenize_str(text))
    unique_words = sorted(word_counts)
    words = [list(word) for word in unique_words]
    frequencies = [word_counts[word] for word in unique_words]
    pair_counts: Counter[tuple[str, str]] = Counter()
    pair_words: defaultdict[tuple[str, str], set[int]] = defaultdict(set)
    for index, symbols in enumerate(words):
        for pair in zip(symbols, symbols[1:], strict=False):
            pair_counts[pair] += frequencies[index]
            pair_words[pair].add(index)
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    for symbol in sorted(ByteLevel.alphabet()):
        vocab.setdefault(symbol, len(vocab))
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)
    merges: list[tuple[str, str]] = []
    while heap and len(vocab) < vocab_size:
        negative_count, pair = heapq.heappop(heap)
        if -negative_count != pair_counts.get(pair, 0):
            continue  # stale entry: the count changed since it was pushed
        if -negative_count < min_frequency:
            break
        merged = pair[0] + pair[1]
        merges.append(pair)
        vocab.setdefault(merged, len(vocab))
        changed: set[tuple[str, str]] = set()
        for index in sorted(pair_words.pop(pair, ())):
            symbols, frequency = words[index], frequencies[index]
            for old in zip(symbols, symbols[1:], strict=False):
                pair_counts[old] -= frequency
                changed.add(old)
            new_symbols, position = [], 0
            while position < len(symbols):
                if tuple(symbols[position : position + 2]) == pair:
                    new_symbols.append(merged)
                    position += 2
                else:
                    new_symbols.append(symbols[position])
                    position += 1
            words[index] = new_symbols
            for new in zip(new_symbols, new_symbols[1:], strict=False):
                pair_counts[new] += frequency
                pair_words[new].add(index)
                changed.add(new)
        pair_counts.pop(pair, None)
        for changed_pair in sorted(changed - {pair}):
            count = pair_counts.get(changed_pair, 0)
            if count > 0:
                heapq.heappush(heap, (-count, changed_pair))
            else:
                pair_counts.pop(changed_pair, None)
    return vocab, merges


def train_tokenizer(
    texts: Sequence[str], vocab_size: int, max_length: int, out_dir: str | Path
) -> Any:
    """Train a byte-level BPE on `texts` (`train_bpe`) and save it as a RobertaTokenizerFast
    in `out_dir` (tokenizer.json, vocab.json, merges.txt, ...).

    A small corpus yields fewer tokens than `vocab_size`; the model keeps the configured
    vocabulary size (rows beyond the tokenizer's are never looked up), recorded in provenance.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import RobertaTokenizerFast

    if not texts:
        raise ValueError("cannot train a tokenizer on an empty corpus")
    vocab, merges = train_bpe(texts, vocab_size)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.RobertaProcessing(
        ("</s>", vocab["</s>"]), ("<s>", vocab["<s>"]), trim_offsets=True, add_prefix_space=False
    )
    backend.add_special_tokens(SPECIAL_TOKENS)
    tokenizer = RobertaTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=max_length,
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out_dir)
    backend.model.save(str(out_dir))  # vocab.json + merges.txt, as roberta-base ships them
    return tokenizer


def build_synthetic_model(settings: dict[str, Any]) -> Any:
    """RobertaForSequenceClassification with seeded random weights (see `fit_synthetic_head`)."""
    import torch
    from transformers import RobertaConfig, RobertaForSequenceClassification

    labels = list(settings["labels"])
    config = RobertaConfig(
        vocab_size=settings["vocab_size"],
        hidden_size=settings["hidden_size"],
        num_hidden_layers=settings["num_hidden_layers"],
        num_attention_heads=settings["num_attention_heads"],
        intermediate_size=settings["intermediate_size"],
        max_position_embeddings=settings["max_position_embeddings"],
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        layer_norm_eps=1e-5,
        initializer_range=float(settings["initializer_range"]),
        id2label=dict(enumerate(labels)),
        label2id={label: index for index, label in enumerate(labels)},
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(int(settings["seed"]))
    try:
        model = RobertaForSequenceClassification(config)
    finally:
        torch.random.set_rng_state(generator_state)
    return model.eval()


def fit_synthetic_head(
    model: Any,
    tokenizer_json: str | Path,
    texts: Sequence[str],
    *,
    seed: int = 0,
    gain: float = SYNTHETIC_HEAD_GAIN,
    max_texts: int = SYNTHETIC_HEAD_TEXTS,
) -> dict[str, Any]:
    """Set the output layer of a synthetic model's head so that its logits vary across texts.

    The score of a text is the standardized projection of the head's tanh features on their
    first principal component over a seeded sample of the corpus; label k wins between the
    k-th and (k+1)-th quantiles of the score, logits grow with `gain` x the distance to the
    thresholds. Deterministic for a given model, corpus and seed. Returns a summary for
    provenance.
    """
    import torch
    from tokenizers import Tokenizer

    n_labels = model.config.num_labels
    rng = np.random.default_rng(seed)
    sample = [texts[i] for i in rng.permutation(len(texts))[:max_texts]]
    if len(sample) <= n_labels:
        raise ValueError(f"need more than {n_labels} corpus texts to fit the synthetic head")
    tokenizer = Tokenizer.from_file(str(tokenizer_json))
    tokenizer.enable_truncation(max_length=int(model.config.max_position_embeddings) - 2)
    tokenizer.enable_padding(pad_id=1, pad_token="<pad>")
    sample.sort(key=len)  # similar lengths per batch: less padding
    features = []
    with torch.inference_mode():
        for start in range(0, len(sample), 16):
            encodings = tokenizer.encode_batch(sample[start : start + 16])
            hidden = model.roberta(
                input_ids=torch.tensor([e.ids for e in encodings]),
                attention_mask=torch.tensor([e.attention_mask for e in encodings]),
            ).last_hidden_state[:, 0]
            features.append(torch.tanh(model.classifier.dense(hidden)).double().numpy())
    matrix = np.concatenate(features)
    mean = matrix.mean(axis=0)
    _, singular_values, components = np.linalg.svd(matrix - mean, full_matrices=False)
    direction = components[0] / (singular_values[0] / np.sqrt(len(matrix)))
    score = (matrix - mean) @ direction  # standardized first principal component
    # Ordinal head (like sentiment): label k wins where the score lies between the k-th and
    # (k+1)-th n_labels-quantiles of the corpus, so labels are balanced. Logit k is
    # gain * (k * score - sum of the first k thresholds), piecewise-linear in the score.
    thresholds = np.quantile(score, np.arange(1, n_labels) / n_labels)
    offsets = np.concatenate([[0.0], np.cumsum(thresholds)])
    slopes = np.arange(n_labels, dtype=np.float64)
    slopes -= slopes.mean()
    weight = gain * np.outer(slopes, direction)
    bias = gain * (-offsets - slopes * (mean @ direction))
    bias -= bias.mean()
    with torch.no_grad():
        model.classifier.out_proj.weight.copy_(torch.from_numpy(weight))
        model.classifier.out_proj.bias.copy_(torch.from_numpy(bias))
    return {
        "method": "ordinal head on the first principal component of the head features",
        "n_texts": len(sample),
        "gain": gain,
        "thresholds": [float(value) for value in thresholds],
        "feature_std_of_components": [
            float(value / np.sqrt(len(matrix))) for value in singular_values[:4]
        ],
    }
