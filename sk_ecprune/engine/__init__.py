"""The compression engine: prunes and quantises the weights of any torch module.

Pure torch: importing it loads neither scikit-learn nor skorch nor joblib. It works on any
``torch.nn.Module`` whose ``nn.Linear`` layers are each applied once per sample (a
``Sequential``, a skorch module, a residual MLP).

One protocol for every compression method (:mod:`.methods`): a method is an object whose
options are its constructor's arguments; given a layer's recorded statistics it changes
the layer (removes weights, removes hidden units, or rounds weights) and reports what it
changed. One registry, :data:`METHODS`, maps names to methods per kind (:data:`SCORERS`
and :data:`NEURON_SCORERS` are its views); one loop, :func:`~.methods.run_steps`, runs any
method over the layers and the schedule's steps; ``method=`` takes a name or an instance.
Where each part lives:

- :mod:`.methods`: the protocol, the registry and the loop;
- :mod:`.recording`: a module's linear layers, their inputs and outputs (hooks), the data;
- :mod:`.sensitivities`: per-sample output sensitivities (autograd; closed form for chains);
- :mod:`.scoring`: the weight methods (:class:`WeightScorer`), one module per family;
- :mod:`.neurons`: the unit methods (:class:`UnitScorer`): scores, selection, compensation;
- :mod:`.quantizers`: the quantisers (:class:`Quantizer`): grids and the rounding sweep;
- :mod:`.selection`: which weights go (global, per layer, magnitude budget, layer floors);
- :mod:`.masks`: ``torch.nn.utils.prune`` masks, :func:`make_permanent`;
- :mod:`.compensation`: bias shifts for removed weights;
- :mod:`.schedules`: iterative and gradual schedules;
- :mod:`.report`: :class:`PruningReport`; :mod:`.quantization`: :class:`QuantizationReport`;
- :mod:`.chain`: recognising a plain chain of linear layers and elementwise modules;
- :mod:`.compaction`: :func:`compact`, a smaller module without the disconnected units;
- :mod:`.sparse`: :func:`to_sparse`, CSR weight matrices for batch inference;
- :mod:`.mlp`: :class:`MLP`, the plain multilayer perceptron the estimators train;
- :mod:`.pruning`: :func:`prune_model`; :mod:`.quantization`: :func:`quantize_model`.
"""

from .compaction import compact, hidden_widths
from .mlp import ACTIVATIONS, MLP
from .masks import kept_masks, layer_sparsity, make_permanent
from .neurons import (
    NEURON_SCORERS,
    ECOBSUnits,
    ECUnits,
    NeuronImportance,
    UnitScorer,
    register_neuron_scorer,
    score_neurons,
)
from .pruning import prune_model
from .quantization import LayerQuantization, QuantizationReport, quantize_model
from .quantizers import QUANTIZERS, GPTQ, ECOBSRounding, ECRounding, Quantizer, RoundToNearest
from .methods import METHODS, Method, register_method
from .report import LayerReport, PruningReport, chain_reports
from .schedules import gradual_schedule, step_ratios
from .sparse import CSRLinear, to_sparse
from .scoring import SCORERS, Importance, WeightScorer, register_scorer, score_weights
from .scoring.ec import EC
from .scoring.ec_obs import ECOBS

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "CSRLinear",
    "EC",
    "ECOBS",
    "ECOBSUnits",
    "ECUnits",
    "UnitScorer",
    "WeightScorer",
    "ECOBSRounding",
    "ECRounding",
    "GPTQ",
    "LayerQuantization",
    "METHODS",
    "Method",
    "QUANTIZERS",
    "QuantizationReport",
    "Quantizer",
    "RoundToNearest",
    "quantize_model",
    "register_method",
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
    "register_neuron_scorer",
    "register_scorer",
    "score_neurons",
    "score_weights",
    "step_ratios",
    "to_sparse",
]
