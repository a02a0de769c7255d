"""Images → backbone features: the backbone registry, extraction over orientations, the feature cache."""

from hashidx.features.backbones import DEFAULT_BACKBONE, BackboneSpec, FeatureExtractor, backbone_spec
from hashidx.features.cache import FeatureCache
from hashidx.features.extract import DEFAULT_VIEWS, Extraction, compute_features, extract, extract_to

__all__ = [
    "DEFAULT_BACKBONE",
    "DEFAULT_VIEWS",
    "BackboneSpec",
    "Extraction",
    "FeatureCache",
    "FeatureExtractor",
    "backbone_spec",
    "compute_features",
    "extract",
    "extract_to",
]
