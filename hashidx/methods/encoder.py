"""Network-side encoding: images → backbone → hash head → sgn → packed codes (queries, added items)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hashidx.codes.binary import pack, sign
from hashidx.data.footprints import Footprints, footprints
from hashidx.data.rasters import Radiometry
from hashidx.data.stac import StacRecord
from hashidx.engines.base import Engine, Stage
from hashidx.engines.local import LocalEngine
from hashidx.errors import HashidxError
from hashidx.features.backbones import FeatureExtractor, backbone_spec, recorded_layers
from hashidx.features.cache import FeatureCache
from hashidx.features.content import ContentProjection
from hashidx.features.extract import BackboneStage, collect
from hashidx.features.runtime import DEFAULT_RUNTIME, check_runtime
from hashidx.io.progress import warn
from hashidx.io.threads import use_torch_threads
from hashidx.methods.portable import HeadArrays, WithContent, recall, remember


class Encoder:
    """A trained hash head with the backbone its checkpoint names.

    `head` is the torch module a checkpoint holds, or a frozen-feature head's arrays (methods.portable). A head on
    frozen features always runs as those arrays, so the codes do not depend on whether torch was loaded; a
    fine-tuned network runs in torch or as its ONNX twin.
    """

    def __init__(
        self, head: Any, config: dict, runtime: str = DEFAULT_RUNTIME, content: ContentProjection | None = None
    ):
        self.head, self.config, self.runtime = head, config, check_runtime(runtime)
        if not isinstance(head, HeadArrays):
            use_torch_threads()  # as training does (hashidx.io.threads): measured no slower alone, faster when busy
        self.arrays: HeadArrays | None = None
        if not self.finetuned:
            self.arrays = head if isinstance(head, HeadArrays) else HeadArrays.of(head, content)
        self._extractor: Any = None  # FeatureExtractor, or a fine-tuned network's ONNX twin
        self._prepared = False
        self.radiometry = Radiometry.from_attrs(config)  # the bands and scaling every image is read with

    @property
    def bits(self) -> int:
        return int(self.config["bits"])

    @property
    def finetuned(self) -> bool:
        return bool(self.config.get("finetune"))

    @property
    def content(self) -> ContentProjection | None:
        """The content projection of the model's frozen features (None: a fine-tuned or older model has none)."""
        return None if self.arrays is None else self.arrays.content

    def split(self, outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(u, content vectors or None) of outputs embedded `with_content`."""
        if outputs.shape[1] == self.bits:
            return outputs, None
        return outputs[:, : self.bits], outputs[:, self.bits :].astype(np.float16)

    @property
    def layers(self) -> str:
        """What the model's input features are made of."""
        return recorded_layers(self.config["backbone"], self.config.get("layers"))

    def check_features(self, cache: FeatureCache, source: str | Path) -> None:
        """Refuse features from another backbone or image size than the model was trained on."""
        if self.finetuned:
            raise HashidxError(
                f"{source}: cached features come from the frozen {cache.backbone}, but this model "
                f"fine-tuned its {self.config['backbone']} backbone; query with image paths instead"
            )
        have = (cache.backbone, cache.image_size, cache.views)
        want = (self.config["backbone"], self.config["image_size"], self.config["views"])
        if cache.weights != self.config.get("weights", "imagenet"):
            raise HashidxError(
                f"{source}: features from {cache.backbone} with weights {cache.weights!r}, but the "
                f"model was trained on weights {self.config.get('weights', 'imagenet')!r}; re-extract "
                "with the model's --weights"
            )
        if have != want:
            raise HashidxError(
                f"{source}: features are {have[0]} at {have[1]}px, {have[2]} view(s), but the model expects "
                f"{want[0]} at {want[1]}px, {want[2]} view(s); re-extract with "
                f"--backbone {want[0]} --image-size {want[1]} --views {want[2]}"
            )
        if cache.features.shape[1] != int(self.config["feature_dim"]):
            raise HashidxError(
                f"{source}: features are {cache.features.shape[1]}-d but the model takes "
                f"{self.config['feature_dim']}-d; use the feature cache the model was trained on"
            )
        if not cache.radiometry.same_as(self.radiometry):
            raise HashidxError(
                f"{source}: features read with {cache.radiometry.describe()}, but the model was trained on "
                f"{self.radiometry.describe()}; re-extract with --scale MODEL.pt (the model's bands and scaling)"
            )
        if cache.layers != self.layers:
            raise HashidxError(
                f"{source}: features are {cache.layers} of {cache.backbone}, but the model was trained on "
                f"{self.layers}; use the feature cache the model was trained on, or retrain the model "
                "on these features"
            )

    def embed_features(self, features: np.ndarray) -> np.ndarray:
        """The network's real-valued outputs F(x) for backbone features (u = tanh(·) for a hash head)."""
        embed: Any = self.arrays.embed if self.arrays is not None else self.head.embed
        return np.asarray(embed(features.astype(np.float32)))

    def content_of(self, features: np.ndarray) -> np.ndarray | None:
        """Content vectors of backbone features (None: the model has no content projection)."""
        return None if self.content is None else self.content.apply(features)

    def encode_features(self, features: np.ndarray) -> np.ndarray:
        """Packed codes sgn(F(x)) for backbone features."""
        return pack(sign(self.embed_features(features)))

    def encode_images(
        self, paths: Sequence[Path], batch_size: int = 8, on_error: str = "fail", engine: Engine | None = None
    ) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]:
        """Packed codes for image files (every image passes the backbone and the head, here or on `engine`'s
        workers), the positions they are for, and (position, reason) of images left out by on_error="skip"."""
        u, kept, skipped = self.embed_images(paths, batch_size, on_error, engine)
        return pack(sign(u)), kept, skipped

    def _check_layers(self) -> None:
        spec = backbone_spec(self.config["backbone"])
        if not self.finetuned and self.layers != spec.layers:
            raise HashidxError(
                f"this model was trained on {self.layers} of {spec.name}, and this hashidx extracts "
                f"{spec.layers}: retrain the model ('hashidx train') to encode images with it"
            )

    def prepare(self) -> Any:
        """Build the network that image queries pass (once): the frozen backbone with its ONNX twin at the
        model's image size, or a fine-tuned network's twin (None: it runs in torch). A warm process pays this
        before its first query."""
        if self._prepared:
            return self._extractor
        self._check_layers()
        if self.finetuned:
            from hashidx.methods.finetune import onnx_outputs

            # On a GPU (training's own database pass) the network stays in torch.
            on_cpu = next(self.head.parameters()).device.type == "cpu"
            self._extractor = (
                onnx_outputs(self.head, self.config["backbone"], self.radiometry.channels)
                if self.runtime == "onnx" and on_cpu
                else None
            )
            self._prepared = True
            return self._extractor
        spec = backbone_spec(self.config["backbone"])
        self._extractor = FeatureExtractor(
            spec, self.config.get("weights", "imagenet"), self.runtime, self.radiometry.channels
        )
        if self.runtime == "onnx":
            size = int(self.config["image_size"])
            self._extractor.twin(size, size)
        self._prepared = True
        return self._extractor

    def stage(self, remote: bool = False, with_content: bool = False) -> Stage:
        """The network as an engine stage: images → outputs u (followed by the content vector `with_content`),
        chunk by chunk. In this process it is the prepared network; for a `remote` engine a recipe its workers
        build from (the weights travel with it)."""
        self._check_layers()
        if self.finetuned:
            from hashidx.methods.finetune import HashNetStage

            twin = None if remote else self.prepare()
            return HashNetStage(self.head, self.config["backbone"], self.runtime, self.radiometry, twin, not remote)
        return BackboneStage(
            self.config["backbone"],
            self.config.get("weights", "imagenet"),
            self.runtime,
            self.radiometry,
            int(self.config["image_size"]),
            int(self.config["views"]),
            WithContent(self.arrays) if with_content and self.arrays and self.content else self.arrays,
            None if remote else self.prepare(),
        )

    def embed_images(
        self,
        paths: Sequence[Path],
        batch_size: int = 8,
        on_error: str = "fail",
        engine: Engine | None = None,
        with_content: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]:
        """`encode_images` before the sign: real-valued outputs (followed by content vectors `with_content`, where
        the model has a projection: `split` parts them), kept positions, skipped (position, reason). The head runs
        on each chunk where its features are, so every engine gives the same outputs."""
        engine = engine or LocalEngine()
        stage = self.stage(engine.remote, with_content)
        width = self.bits + (self.content.dims if with_content and self.content is not None else 0)
        state = collect(paths, stage, width, engine, batch_size, "encode images", on_error)
        return state.features, state.kept, state.skipped

    def encode_named(
        self,
        items: Sequence[tuple[str, Path]],
        source: str | Path,
        batch_size: int = 8,
        on_error: str = "fail",
        engine: Engine | None = None,
    ) -> tuple[list[str], np.ndarray, list[tuple[str, str]]]:
        """(names, packed codes, skipped (name, reason)) for named image files; refuses when none could be read."""
        names, u, skipped = self.embed_named(items, source, batch_size, on_error, engine)
        return names, pack(sign(u)), skipped

    @staticmethod
    def footprints_of(
        items: Sequence[tuple[str, Path]], names: Sequence[str], catalog: Mapping[Path, StacRecord] | None = None
    ) -> Footprints | None:
        """Footprints of the named items that were encoded (None when none is georeferenced or dated); `catalog`
        gives STAC items' times and ids."""
        where = dict(items)
        return footprints([where[n] for n in names], warn, catalog)

    def embed_named(
        self,
        items: Sequence[tuple[str, Path]],
        source: str | Path,
        batch_size: int = 8,
        on_error: str = "fail",
        engine: Engine | None = None,
        with_content: bool = False,
    ) -> tuple[list[str], np.ndarray, list[tuple[str, str]]]:
        """`encode_named` before the sign: the real-valued outputs (`embed_images`) instead of codes."""
        u, kept, skipped = self.embed_images([p for _, p in items], batch_size, on_error, engine, with_content)
        if len(kept) == 0:
            raise HashidxError(f"{source}: none of the images could be read; first: {skipped[0][1]}")
        return [items[i][0] for i in kept], u, [(items[i][0], reason) for i, reason in skipped]


def load_encoder(path: str | Path, runtime: str = DEFAULT_RUNTIME) -> Encoder:
    """The encoder a checkpoint holds. On the ONNX path a checkpoint whose head was remembered (methods.portable)
    loads without torch; otherwise torch loads it, refusing anything but plain tensors, and its head is remembered."""
    if check_runtime(runtime) == "onnx":
        recalled = recall(path)
        if recalled is not None:
            return Encoder(*recalled, runtime)
    from hashidx.methods.checkpoints import load_model

    head, config, content = load_model(path)
    encoder = Encoder(head, config, runtime, content)
    if encoder.arrays is not None:
        remember(path, encoder.arrays, encoder.config)
    return encoder
