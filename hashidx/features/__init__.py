"""Images → backbone features: the backbone registry, extraction over orientations, the feature cache."""

from typing import TYPE_CHECKING

from hashidx.io.lazy import lazy_exports

# The names this subpackage exports; each loads its module on first use (hashidx.io.lazy).
if TYPE_CHECKING:
    from hashidx.features.backbones import DEFAULT_BACKBONE, BackboneSpec, FeatureExtractor, backbone_spec
    from hashidx.features.cache import FeatureCache
    from hashidx.features.extract import DEFAULT_VIEWS, Extraction, compute_features, extract_to, write_features
    from hashidx.features.runtime import DEFAULT_RUNTIME, RUNTIMES, onnx_twin

__all__, __getattr__, __dir__ = lazy_exports(__name__)
