"""The one typed, validated view of params.yaml (see params.py); every default of the project lives in this
package."""
from agvq.config.params import Params, load_params, parse_params
from agvq.config.postprocess import PostprocessConfig
from agvq.config.schema import deep_merge, merge_into, parse, to_dict
from agvq.config.sections import (AblateConfig, BackboneConfig, CondConfig, CondLossConfig, CondModelConfig,
                                  DataConfig, DiagnoseConfig, EvaluateConfig, InferConfig, MaskLossConfig,
                                  PreprocessConfig, QuantizerConfig, RobustnessConfig, RuntimeConfig, SegResNetConfig,
                                  SeverityLevels, SplitConfig, SwinUNETRConfig, SynthesizeConfig, TrainConfig,
                                  UNETRConfig, UNetConfig, VNetConfig, VQVAEConfig, VQVAEModelConfig)
from agvq.config.attention import AttentionStudyConfig
from agvq.config.tokenizer import (IntensityConfig, TokenizerConfig, TokenizerEvalConfig, TokenizerLossConfig,
                                   TokenizerModelConfig, TokenizerTrainConfig)
from agvq.config.variants import AttentionSpec, VariantSpec

__all__ = [
    "AblateConfig", "AttentionSpec", "AttentionStudyConfig", "BackboneConfig", "CondConfig", "CondLossConfig",
    "CondModelConfig", "DataConfig", "DiagnoseConfig",
    "EvaluateConfig", "InferConfig", "IntensityConfig", "MaskLossConfig", "Params", "PostprocessConfig",
    "PreprocessConfig", "QuantizerConfig", "RobustnessConfig", "RuntimeConfig", "SegResNetConfig", "SeverityLevels",
    "SplitConfig", "SwinUNETRConfig", "SynthesizeConfig", "TokenizerConfig", "TokenizerEvalConfig",
    "TokenizerLossConfig", "TokenizerModelConfig", "TokenizerTrainConfig", "TrainConfig", "UNETRConfig",
    "UNetConfig", "VNetConfig", "VQVAEConfig",
    "VQVAEModelConfig", "VariantSpec", "deep_merge", "load_params", "merge_into", "parse", "parse_params",
    "to_dict",
]
