"""INT8 variants of an exported model: static quantisation (`static`: INT8 weights and activations, calibrated on
images), weight-only INT8 (`weights`: INT8-stored weights, fp32 compute; what the bundled model ships), and
their agreement with the fp32 source (`agreement`)."""

from hypoderm.export.int8.agreement import ImageLike, agreement_report, model_inputs
from hypoderm.export.int8.static import (
    CALIBRATION_METHODS,
    DEFAULT_SETTINGS,
    FORMATS,
    SENSITIVE_GROUPS,
    ImageCalibrationReader,
    off_path_nodes,
    quantize_int8,
    sensitive_nodes,
)
from hypoderm.export.int8.weights import quantize_weights_int8

__all__ = ["CALIBRATION_METHODS", "DEFAULT_SETTINGS", "FORMATS", "SENSITIVE_GROUPS", "ImageCalibrationReader",
           "ImageLike", "agreement_report", "model_inputs", "off_path_nodes", "quantize_int8", "quantize_weights_int8",
           "sensitive_nodes"]
