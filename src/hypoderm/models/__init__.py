"""The model zoo: the reference MobileNetV3-Small, the improved model and its ablations, baselines."""

from hypoderm.models.layers import ECA, eca_kernel_size
from hypoderm.models.mobilenetv3 import (
    MNV3_SMALL,
    BlockConfig,
    MobileNetV3,
    MobileNetV3Spec,
    dilate,
    output_stride,
    receptive_field,
    with_activation,
    with_attention,
)
from hypoderm.models.registry import (
    ALIASES,
    BASELINES,
    DESIGN_VARIANTS,
    VARIANTS,
    LoadReport,
    PretrainedMismatchError,
    canonical_name,
    count_parameters,
    create_model,
    imagenet_weights_path,
    is_table_model,
    list_models,
    load_matching,
    mnv3s_spec,
    weights_record,
)

__all__ = [
    "ALIASES", "BASELINES", "DESIGN_VARIANTS", "BlockConfig", "ECA", "LoadReport", "MNV3_SMALL", "MobileNetV3",
    "MobileNetV3Spec", "PretrainedMismatchError", "VARIANTS", "canonical_name", "count_parameters", "create_model",
    "dilate", "eca_kernel_size", "imagenet_weights_path", "is_table_model", "list_models", "load_matching",
    "mnv3s_spec", "output_stride", "receptive_field", "weights_record", "with_activation", "with_attention",
]
