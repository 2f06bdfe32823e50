"""The pruning engine: scores, selects, masks and compensates the weights of any torch module.

Pure torch: importing it loads neither scikit-learn nor skorch nor joblib. It works on any
``torch.nn.Module`` whose ``nn.Linear`` layers are each applied once per sample (a
``Sequential``, a skorch module, a residual MLP). Where each part lives:

- :mod:`.recording`: a module's linear layers, their inputs and outputs (hooks), the data;
- :mod:`.sensitivities`: per-sample output sensitivities (autograd; closed form for chains);
- :mod:`.scoring`: the registry :data:`SCORERS` and one module per family of methods;
- :mod:`.selection`: which weights go (global, per layer, magnitude budget, layer floors);
- :mod:`.masks`: ``torch.nn.utils.prune`` masks, :func:`make_permanent`;
- :mod:`.compensation`: bias shifts for removed weights;
- :mod:`.neurons`: removing whole hidden units (scores, selection, compensation);
- :mod:`.schedules`: iterative and gradual schedules;
- :mod:`.report`: :class:`PruningReport`;
- :mod:`.chain`: recognising a plain chain of linear layers and elementwise modules;
- :mod:`.compaction`: :func:`compact`, a smaller module without the disconnected units;
- :mod:`.sparse`: :func:`to_sparse`, CSR weight matrices for batch inference;
- :mod:`.pruning`: :func:`prune_model`, which calls the others.
"""

from .compaction import compact, hidden_widths
from .masks import kept_masks, layer_sparsity, make_permanent
from .neurons import NEURON_SCORERS, NeuronImportance, register_neuron_scorer, score_neurons
from .pruning import prune_model
from .report import LayerReport, PruningReport, chain_reports
from .schedules import gradual_schedule, step_ratios
from .sparse import CSRLinear, to_sparse
from .quantization import QUANTIZERS, LayerQuantization, QuantizationReport, quantize_model
from .scoring import SCORERS, Importance, register_scorer, score_weights

__all__ = [
    "CSRLinear",
    "LayerQuantization",
    "QUANTIZERS",
    "QuantizationReport",
    "NEURON_SCORERS",
    "SCORERS",
    "Importance",
    "NeuronImportance",
    "LayerReport",
    "PruningReport",
    "chain_reports",
    "compact",
    "gradual_schedule",
    "hidden_widths",
    "kept_masks",
    "layer_sparsity",
    "make_permanent",
    "prune_model",
    "quantize_model",
    "register_neuron_scorer",
    "register_scorer",
    "score_neurons",
    "score_weights",
    "step_ratios",
    "to_sparse",
]
