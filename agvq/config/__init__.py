"""The one typed, validated view of params.yaml (see params.py); every default of the project lives in this
package."""
from agvq.config.params import Params, load_params, parse_params
from agvq.config.schema import deep_merge, merge_into, parse, to_dict
from agvq.config.sections import (AblateConfig, BackboneConfig, CondConfig, CondLossConfig, CondModelConfig,
                                  DataConfig, EvaluateConfig, InferConfig, MaskLossConfig, PreprocessConfig,
                                  QuantizerConfig, RuntimeConfig, SplitConfig, SynthesizeConfig, TrainConfig,
                                  UNetConfig, VQVAEConfig, VQVAEModelConfig)
from agvq.config.tokenizer import (IntensityConfig, TokenizerConfig, TokenizerEvalConfig, TokenizerLossConfig,
                                   TokenizerModelConfig, TokenizerTrainConfig)
from agvq.config.variants import VariantSpec

__all__ = [
    "AblateConfig", "BackboneConfig", "CondConfig", "CondLossConfig", "CondModelConfig", "DataConfig",
    "EvaluateConfig", "InferConfig", "IntensityConfig", "MaskLossConfig", "Params", "PreprocessConfig", "QuantizerConfig",
    "RuntimeConfig", "SplitConfig", "SynthesizeConfig", "TokenizerConfig", "TokenizerEvalConfig",
    "TokenizerLossConfig", "TokenizerModelConfig", "TokenizerTrainConfig", "TrainConfig", "UNetConfig", "VQVAEConfig",
    "VQVAEModelConfig", "VariantSpec", "deep_merge", "load_params", "merge_into", "parse", "parse_params",
    "to_dict",
]
