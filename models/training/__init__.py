"""Training a potential: graphs and batches, loss, metrics, EMA, checkpoints, the trainer."""

from farfield.models.training.checkpoint import load_checkpoint, save_checkpoint
from farfield.models.training.graphs import (
    build_graphs,
    element_count_matrix,
    force_rms,
    graphs_from_cache,
    iterate_batches,
)
from farfield.models.training.loss import weighted_loss
from farfield.models.training.metrics import METRIC_NAMES, ErrorAccumulator
from farfield.models.training.trainer import (
    Evaluation,
    NonFiniteLossError,
    Reporter,
    Trainer,
    TrainingResult,
    resolve_device,
)

__all__ = [
    "METRIC_NAMES",
    "ErrorAccumulator",
    "Evaluation",
    "NonFiniteLossError",
    "Reporter",
    "Trainer",
    "TrainingResult",
    "build_graphs",
    "element_count_matrix",
    "force_rms",
    "graphs_from_cache",
    "iterate_batches",
    "load_checkpoint",
    "resolve_device",
    "save_checkpoint",
    "weighted_loss",
]
