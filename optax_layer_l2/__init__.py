"""Per-layer, shape-scaled L2 regularisation for Optax.

.. code-block:: python

  import optax, optax_layer_l2 as ll2
  tx = optax.chain(ll2.layer_l2(1e-4, scaling="fan_avg"), optax.adam(1e-3))
"""

from optax_layer_l2._activations import activation_sizes
from optax_layer_l2._alias import layer_adamw
from optax_layer_l2._describe import Report, Row, describe
from optax_layer_l2._fans import Dims, Fans, InferredDims, fans, stacked
from optax_layer_l2._infer import infer_dims
from optax_layer_l2._learning_rate import layer_lr
from optax_layer_l2._mup import rescale_init
from optax_layer_l2._penalty import penalty
from optax_layer_l2._rule import Skip
from optax_layer_l2._scales import scales
from optax_layer_l2._scaling import LR_SCALINGS, SCALINGS, LeafInfo
from optax_layer_l2._transform import LayerL2ReferenceState, LayerL2State, layer_l2

__version__ = "0.4.0"

__all__ = [
  "LR_SCALINGS",
  "SCALINGS",
  "Dims",
  "Fans",
  "InferredDims",
  "LayerL2ReferenceState",
  "LayerL2State",
  "LeafInfo",
  "Report",
  "Row",
  "Skip",
  "activation_sizes",
  "describe",
  "fans",
  "infer_dims",
  "layer_adamw",
  "layer_l2",
  "layer_lr",
  "penalty",
  "rescale_init",
  "scales",
  "stacked",
]
