"""The one runtime configuration: ``ray_config.yaml`` validated by a pydantic schema.

Every model forbids unknown keys and documents each field with its bounds. Errors name the key path and
the line in the YAML file. ``${ENV}`` substitution is allowed only in fields marked as secrets or URLs.

The schema is the only truth: every cross-field rule that runtime code would otherwise check is a
validator here, so ``nexara config validate`` refuses what a stream actor would refuse. Live code never
receives the whole tree: :meth:`NexaraConfig.resolve_camera` builds one frozen :class:`ResolvedCamera`
per source (the global ``windows`` and ``confirmation`` sections merged with the camera's overrides and
validated again).

Modules: :mod:`~nexara.config.base` (base models, rule errors, tier defaults), :mod:`~nexara.config.offline`
(media, model, dataset, features, Ray, training), :mod:`~nexara.config.live` (cameras, windows,
confirmation, Serve, sinks, resolved cameras), :mod:`~nexara.config.root` (the root and its loading).
This module only re-exports.
"""

from nexara.config.base import ALERT_TIERS, CONFIDENCE_TIERS, RuleError, error_key
from nexara.config.live import (
    BackboneServeConfig,
    BatchConfig,
    CameraConfig,
    ConfirmationSection,
    EnsembleServeConfig,
    GridConfig,
    RateLimitConfig,
    ResolvedCamera,
    ServeSection,
    SinksSection,
    SourcePolicySection,
    SourceSettings,
    WebhookConfig,
    WindowsConfig,
)
from nexara.config.offline import (
    DatasetConfig,
    FeaturesConfig,
    MediaConfig,
    ModelConfig,
    RayConfig,
    ResizePolicy,
    SplitConfig,
    TrainingSection,
)
from nexara.config.root import (
    DEFAULT_CONFIG_PATH,
    ENV_VAR,
    NexaraConfig,
    dump_config,
    expand_env,
    load_config,
    parse_config,
)

__all__ = [
    "ALERT_TIERS",
    "CONFIDENCE_TIERS",
    "DEFAULT_CONFIG_PATH",
    "ENV_VAR",
    "BackboneServeConfig",
    "BatchConfig",
    "CameraConfig",
    "ConfirmationSection",
    "DatasetConfig",
    "EnsembleServeConfig",
    "FeaturesConfig",
    "GridConfig",
    "MediaConfig",
    "ModelConfig",
    "NexaraConfig",
    "RateLimitConfig",
    "RayConfig",
    "ResizePolicy",
    "ResolvedCamera",
    "RuleError",
    "ServeSection",
    "SinksSection",
    "SourcePolicySection",
    "SourceSettings",
    "SplitConfig",
    "TrainingSection",
    "WebhookConfig",
    "WindowsConfig",
    "dump_config",
    "error_key",
    "expand_env",
    "load_config",
    "parse_config",
]
