"""A tiny, RANDOMLY INITIALISED OWL-ViT model folder for tests and benchmarks.

No registry reachable from the build machines ships OWL-ViT or OWLv2 weights (they live on model
hubs), so the open-vocabulary tests build a small OWL-ViT from a config with random weights and
save it, with its processor, the way ``save_pretrained`` saves a hub model. The node then loads
it through the same local-folder path a user's downloaded model takes.

Its detections are MEANINGLESS: the weights are random. Tests use it to check the plumbing
(labels are the prompt objects, thresholds are applied, counts, stamps, refusals, the embedding
cache), never what it finds.

The tokenizer is a real CLIP tokenizer (byte-level BPE) over a generated vocabulary: the 256
byte symbols, each also as a word end (``</w>``), and the two special tokens, with no merges, so
text is split into characters. ``max_text_tokens`` (the text model's position count) bounds the
prompt length in tokens: characters + 2.
"""

from __future__ import annotations

from pathlib import Path

TINY_OWL_NOTE = "randomly initialised tiny OWL-ViT (test model: its detections are meaningless)"


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for bytes (GPT-2 / CLIP mapping)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    symbols = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in symbols:
            symbols[b] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in range(256)]


def write_tiny_owl(
    dest: str | Path,
    *,
    image_size: int = 64,
    patch_size: int = 16,
    max_text_tokens: int = 24,
    seed: int = 0,
    kind: str = "owlvit",
    base_size: bool = False,
) -> Path:
    """Write a tiny random OWL-ViT (or OWLv2 with ``kind="owlv2"``: square-padded input) model,
    image processor and CLIP tokenizer to ``dest``.

    ``image_size / patch_size`` squared is the number of candidate boxes per frame (16 by
    default). ``base_size``: the layer sizes of ``google/owlvit-base-patch32`` instead (ViT-B/32
    at 768 px, 12-layer text model, 16 tokens), still random: for timing, since compute does not
    depend on the weights' values (only the vocabulary is smaller). Returns ``dest``.
    Deterministic for a given ``seed``.
    """
    import torch
    import transformers
    from transformers import CLIPTokenizer

    if kind not in ("owlvit", "owlv2"):
        raise ValueError(f"kind {kind!r}: owlvit or owlv2")
    prefix = "OwlViT" if kind == "owlvit" else "Owlv2"
    config_cls = getattr(transformers, f"{prefix}Config")
    model_cls = getattr(transformers, f"{prefix}ForObjectDetection")
    # The PIL image processors: the default ones need torchvision, which is not installed here.
    processor_cls = getattr(transformers, f"{prefix}ImageProcessorPil")

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    symbols = _byte_symbols()
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": 256 + i for i, s in enumerate(symbols)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)

    if base_size:
        image_size, patch_size, max_text_tokens = 768, 32, 16
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_text_tokens)
    text_ids = {
        "vocab_size": len(vocab),
        "max_position_embeddings": max_text_tokens,
        # CLIP: padding is the end-of-text token, which OWL-ViT's pooling looks for
        "pad_token_id": vocab["<|endoftext|>"],
        "bos_token_id": vocab["<|startoftext|>"],
        "eos_token_id": vocab["<|endoftext|>"],
    }
    if base_size:  # the library's defaults are OWL-ViT B/32's
        config = config_cls(text_config=text_ids, vision_config={})
    else:
        config = config_cls(
            text_config={
                **text_ids,
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
            },
            vision_config={
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "image_size": image_size,
                "patch_size": patch_size,
            },
            projection_dim=32,
        )
    torch.manual_seed(seed)
    transformers.utils.logging.disable_progress_bar()
    model = model_cls(config).eval()
    model.save_pretrained(dest)
    size = {"height": image_size, "width": image_size}
    image_processor = (
        processor_cls(size=size, crop_size=size) if kind == "owlvit" else processor_cls(size=size)
    )
    processor = getattr(transformers, f"{prefix}Processor")
    processor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(dest)
    (dest / "README.md").write_text(
        f"# {TINY_OWL_NOTE}\n\nWritten by edge_vision.testing.tiny_owl.write_tiny_owl "
        f"(seed {seed}); for tests of the open_vocab_detector plumbing only.\n"
    )
    return dest
