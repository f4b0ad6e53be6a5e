"""LoRA adapters: training config, the trainer, cards, task embeddings, DATA-MIX, factor I/O."""

from lorasoup_core.adapters.card import CARD_FILE, AdapterCard, slug
from lorasoup_core.adapters.config import TrainingConfig
from lorasoup_core.adapters.embed import embed_texts, task_embedding
from lorasoup_core.adapters.factors import UnsupportedAdapter, read_lora_factors
from lorasoup_core.adapters.mix import mix_tasks
from lorasoup_core.adapters.train import TrainingError, train_lora, validation_loss

__all__ = ["CARD_FILE", "AdapterCard", "TrainingConfig", "TrainingError", "UnsupportedAdapter", "embed_texts", "mix_tasks",
           "read_lora_factors", "slug", "task_embedding", "train_lora", "validation_loss"]
