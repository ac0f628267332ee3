"""The downstream part that trains: WAP, WAP-Transformer, teacher-student adapter, SAP, classifier."""

from .adapter import TeacherStudent, span_mask
from .attributes import LocalAttributes, kmeans
from .backbone import WAPTransformer
from .classifier import EmotionClassifier, pool_mask
from .probe import LayerMeanProbe
from .sap import MeanPooling, StatisticalAttentivePooling, weighted_mean_std
from .wap import WeightedAveragePooling

__all__ = [
    "EmotionClassifier", "LayerMeanProbe", "LocalAttributes", "MeanPooling", "StatisticalAttentivePooling", "TeacherStudent",
    "WAPTransformer", "WeightedAveragePooling", "kmeans", "pool_mask", "span_mask", "weighted_mean_std",
]
