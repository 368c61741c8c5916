"""The root of ``ray_config.yaml`` and its loading: YAML with the line of every key, validated by the
schema, errors naming the key and its line."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, model_validator

from nexara.config.base import Model, RuleError, error_loc, error_msg
from nexara.config.live import (
    CameraConfig,
    ConfirmationSection,
    ResolvedCamera,
    ServeSection,
    SinksSection,
    WindowsConfig,
    override_section,
)
from nexara.config.offline import (
    DatasetConfig,
    FeaturesConfig,
    MediaConfig,
    ModelConfig,
    RayConfig,
    TrainingSection,
)
from nexara.config.upkeep import QualitySection, RetentionSection
from nexara.errors import ConfigError

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[2] / "ray_config.yaml"
ENV_VAR = "NEXARA_CONFIG"


class NexaraConfig(Model):
    """Root of ray_config.yaml."""

    media: MediaConfig = Field(default_factory=MediaConfig)  # type: ignore[arg-type]
    model: ModelConfig = Field(default_factory=ModelConfig)  # type: ignore[arg-type]
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)  # type: ignore[arg-type]
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)  # type: ignore[arg-type]
    ray: RayConfig = Field(default_factory=RayConfig)  # type: ignore[arg-type]
    training: TrainingSection = Field(default_factory=TrainingSection)  # type: ignore[arg-type]
    cameras: list[CameraConfig] = Field(default_factory=list, description="Sources watched by the Serve app.")
    windows: WindowsConfig = Field(default_factory=WindowsConfig)  # type: ignore[arg-type]
    confirmation: ConfirmationSection = Field(default_factory=ConfirmationSection)  # type: ignore[arg-type]
    serve: ServeSection = Field(default_factory=ServeSection)  # type: ignore[arg-type]
    sinks: SinksSection = Field(default_factory=SinksSection)  # type: ignore[arg-type]
    quality: QualitySection = Field(default_factory=QualitySection)  # type: ignore[arg-type]
    retention: RetentionSection = Field(default_factory=RetentionSection)  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _check_cameras(self) -> NexaraConfig:
        ids = [c.id for c in self.cameras]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"camera ids must be unique, repeated: {dupes}")
        for i, cam in enumerate(self.cameras):  # a camera's overrides must give valid sections too
            override_section(self.windows, cam.windows, ("cameras", i, "windows"))
            override_section(self.confirmation, cam.confirmation, ("cameras", i, "confirmation"))
        return self

    def resolve_camera(self, camera: str | CameraConfig) -> ResolvedCamera:
        """What the live path of ``camera`` (one of ``cameras`` by id, or a camera added at run time)
        receives: global sections merged with its overrides, validated again."""
        if isinstance(camera, str):
            found = [c for c in self.cameras if c.id == camera]
            if not found:
                raise ConfigError(f"no camera {camera!r} in the config")
            camera = found[0]
        try:
            windows = override_section(self.windows, camera.windows, ("windows",))
            confirmation = override_section(self.confirmation, camera.confirmation, ("confirmation",))
        except RuleError as exc:
            raise ConfigError(f"camera {camera.id}: {'.'.join(map(str, exc.key))}: {exc}") from None
        return ResolvedCamera(
            camera=camera,
            windows=windows,
            confirmation=confirmation,
            read_timeout_s=self.media.read_timeout_s,
            sinks=self.sinks,
            model_dir=self.serve.model_dir,
            quality=self.quality,
        )


# --- loading -----------------------------------------------------------------------------------

_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that records the line of every mapping key."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping: dict[str, Any] = {}
    lines: dict[str, int] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in mapping:
            raise ConfigError(f"duplicate key '{key}' at line {key_node.start_mark.line + 1}")
        mapping[key] = loader.construct_object(value_node, deep=True)
        lines[str(key)] = key_node.start_mark.line + 1
    mapping["__lines__"] = lines
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _strip_lines(obj: Any, path: tuple[str, ...], table: dict[tuple[str, ...], int]) -> Any:
    if isinstance(obj, dict):
        lines = obj.pop("__lines__", {})
        for k, line in lines.items():
            table[(*path, k)] = line
        return {k: _strip_lines(v, (*path, str(k)), table) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_strip_lines(v, (*path, str(i)), table) for i, v in enumerate(obj)]
    return obj


def _line_for(loc: tuple[Any, ...], table: dict[tuple[str, ...], int]) -> int | None:
    parts = tuple(str(p) for p in loc)
    while parts:
        if parts in table:
            return table[parts]
        parts = parts[:-1]
    return None


def parse_config(text: str, *, source: str = "<string>") -> NexaraConfig:
    """Validate YAML text; raise ConfigError naming the key and its line."""
    try:
        raw = yaml.load(text, Loader=_LineLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{source}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, got {type(raw).__name__}")
    table: dict[tuple[str, ...], int] = {}
    data = _strip_lines(raw, (), table)
    try:
        return NexaraConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = error_loc(err)
            key = ".".join(str(p) for p in loc) or "<root>"
            line = _line_for(loc, table)
            at = f" (line {line})" if line else ""
            problems.append(f"{key}{at}: {error_msg(err)}")
        raise ConfigError(f"{source}: invalid config:\n  " + "\n  ".join(problems)) from None


def load_config(path: str | Path | None = None) -> NexaraConfig:
    """Load ``path``, else $NEXARA_CONFIG, else the repository's ray_config.yaml, else defaults."""
    if path is None:
        env = os.environ.get(ENV_VAR)
        path = Path(env) if env else (DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None)
    if path is None:
        return NexaraConfig()
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    return parse_config(p.read_text(encoding="utf-8"), source=str(p))


def expand_env(value: str) -> str:
    """Substitute ${VAR} (for secrets and URLs only); a missing variable is an error naming it."""

    def repl(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in os.environ:
            raise ConfigError(f"environment variable {name} is referenced in the config but not set")
        return os.environ[name]

    return _ENV_RE.sub(repl, value)


def dump_config(cfg: NexaraConfig) -> str:
    """The resolved config (defaults filled in) as YAML."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
