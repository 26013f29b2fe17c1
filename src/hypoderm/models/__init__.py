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
    MODELS,
    LoadReport,
    ModelRecord,
    PretrainedMismatchError,
    WeightsFileError,
    WeightsNotFoundError,
    canonical_name,
    count_parameters,
    create_model,
    imagenet_weights_path,
    is_table_model,
    list_models,
    load_matching,
    mnv3s_spec,
    model_record,
    register,
    weights_record,
)

__all__ = [
    "BlockConfig", "ECA", "LoadReport", "MNV3_SMALL", "MODELS", "MobileNetV3", "MobileNetV3Spec", "ModelRecord",
    "PretrainedMismatchError", "WeightsFileError", "WeightsNotFoundError", "canonical_name", "count_parameters",
    "create_model", "dilate", "eca_kernel_size", "imagenet_weights_path", "is_table_model", "list_models",
    "load_matching", "mnv3s_spec", "model_record", "output_stride", "receptive_field", "register", "weights_record",
    "with_activation", "with_attention",
]
