"""Configs: the schema of a run's settings, resolving, families of arms, partitions and the hash.

Introduced in chapter 03 (baseline).

A YAML config names only what differs from the schema's defaults.
:func:`parse_config` checks it (unknown keys with a close match, wrong types,
out-of-range values, malformed YAML with its line); :func:`resolve_config`
applies the profile and overrides and returns the *resolved* config: a plain
dict holding every setting, which is what a run's hash is computed from
(:func:`config_hash`), so that changing a default in code changes the hash.
A *family* (:func:`load_family`) is a base config and its arms.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import timm
import yaml

from .classes import CLASSES
from .data import describe_dataset
from .errors import ConfigError
from .losses import build_loss
from .paths import PROFILES, current_profile, project_root, sha256_file
from .preprocess import STRIDE
from .splits import FROZEN_SPLITS, split_path
from .transforms import parse_augment

#: Overrides applied to every config in the smoke profile (dotted keys).
SMOKE_OVERRIDES: dict[str, Any] = {
    "data.image_size": 64,
    "data.max_per_category": 3,
    "data.free_per_epoch": 2,
    "train.epochs": 2,
    "train.batch_size": 4,
}
#: Further smoke overrides of a config with a step budget (native input).
SMOKE_STEP_OVERRIDES: dict[str, Any] = {"train.steps": 4, "train.val_every": 2, "data.crop_size": 64}


def _choice(*values):
    return {"choices": values}


def _range(lo=None, hi=None, lo_open=False):
    return {"range": (lo, hi, lo_open)}


def _later(default: Any, **meta) -> Any:
    """A setting added after the first run records: hashed only when it differs from ``default``
    (:func:`config_hash`), so that every earlier record keeps its hash."""
    return field(default=default, metadata={**meta, "later": True})


@dataclass
class ModelConfig:
    """Architecture and encoder (see :mod:`defectlib.models`)."""

    architecture: str = field(default="unet", metadata=_choice("unet", "unetplusplus", "fpn", "deeplabv3plus"))
    encoder: str = "tf_efficientnet_lite0"
    pretrained: bool = True
    decoder_channels: list[int] | None = field(default_factory=lambda: [128, 64, 32, 16, 16])


@dataclass
class DataConfig:
    """Which data, which fold partition, input size and augmentation."""

    dataset: str = field(default="magnetic_tile", metadata=_choice("magnetic_tile", "folder"))
    root: str | None = None            # dataset folder; Magnetic Tile is found by defectlib.download.find_dataset
    # "grouped": the first region folds; "regions": the corrected ones (tiles with two labels grouped
    # across categories); "random": image level, only to measure how much a leaky split flatters.
    split: str = field(default="grouped", metadata=_choice("grouped", "regions", "random"))
    classes: list[str] | None = None   # filled from the dataset when resolved
    mask_format: str | None = field(default=None, metadata=_choice("binary", "index"))   # None: the dataset's own
    image_size: int = field(default=256, metadata=_range(32, 2048))   # square input: side S of the S x S input
    augment: str = "flips"             # "none" or components joined by "+" (defectlib.transforms.COMPONENTS)
    free_per_epoch: int | None = field(default=48, metadata=_range(0))  # defect-free images per epoch; None: all
    max_per_category: int | None = field(default=None, metadata=_range(1))  # smoke profile: images per category and part
    # What the network sees (defectlib.preprocess): "square" resizes every image to image_size x image_size;
    # "native" keeps each image at its own size times `scale`, trains on crop_size crops (a share
    # defect_crop_fraction centred on a defect pixel, the class drawn uniformly) and predicts on the whole
    # image padded to the network's stride, in overlapping tiles of tile_size where it is larger.
    input: str = _later("square", **_choice("square", "native"))
    scale: float = _later(1.0, **_range(0.1, 4.0))
    crop_size: int = _later(256, **_range(32, 2048))
    defect_crop_fraction: float = _later(0.5, **_range(0.0, 1.0))
    tile_size: int = _later(1024, **_range(64, 8192))
    split_sha256: str | None = _later(None)   # filled when resolved: the fold file's digest (see resolve_config)


@dataclass
class LossConfig:
    """The loss (see :mod:`defectlib.losses`); ``params`` go to its parts' constructors.

    With ``class_weights``, every part that takes class weights gets them,
    unless its params say ``class_weights: null``.
    """

    name: str = "ce"
    class_weights: bool = False
    weight_power: float = field(default=0.5, metadata=_range(0, 2))
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimizerConfig:
    """AdamW with linear warm-up, then cosine decay to zero."""

    lr: float = field(default=0.001, metadata=_range(0, 1, lo_open=True))
    weight_decay: float = field(default=0.0001, metadata=_range(0, 1))
    warmup_fraction: float = field(default=0.1, metadata=_range(0, 0.9))


@dataclass
class TrainConfig:
    """Budget, batch and numerics of the training loop."""

    epochs: int = field(default=30, metadata=_range(1, 1000))
    batch_size: int = field(default=8, metadata=_range(1, 1024))
    patience: int | None = field(default=None, metadata=_range(1))   # None: no early stopping
    # bf16 (autocast) or fp32. "auto" is the first records' value and trains in bf16 too: a run's
    # precision follows from its config, never from the machine (see defectlib.models.run_precision).
    precision: str = field(default="auto", metadata=_choice("auto", "bf16", "fp32"))
    # A budget in optimizer steps, validated on the whole validation fold every val_every steps; it
    # replaces `epochs` (one "epoch" of the history is then one validation period of val_every steps).
    steps: int | None = _later(None, **_range(1, 10_000_000))
    val_every: int | None = _later(None, **_range(1, 10_000_000))
    channels_last: bool = True
    threads: int | None = field(default=None, metadata=_range(1, 256))


@dataclass
class RunConfig:
    """A whole run's settings."""

    name: str
    description: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate_test: bool = True


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _check_value(value: Any, tp, key: str, meta: dict, where: str) -> Any:
    """Check one value against its annotated type and metadata; return it (ints widened to float)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check_value(value, inner[0], key, meta, where)
    bad = ConfigError(f"{where}: {key}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        value = float(value)
    elif tp is str:
        if not isinstance(value, str):
            raise bad
    elif origin is list:
        if not isinstance(value, list):
            raise bad
        value = [_check_value(v, args[0], f"{key}[{i}]", {}, where) for i, v in enumerate(value)]
    elif origin is dict:
        if not isinstance(value, dict):
            raise bad
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(f"{where}: {key}: {value!r} is not one of {list(meta['choices'])}")
    if "range" in meta and value is not None:
        lo, hi, lo_open = meta["range"]
        if (lo is not None and (value <= lo if lo_open else value < lo)) or (hi is not None and value > hi):
            bounds = f"{'>' if lo_open else '>='} {lo}" + (f" and <= {hi}" if hi is not None else "")
            raise ConfigError(f"{where}: {key}: {value!r} out of range (must be {bounds})")
    return value


def _build(cls, raw: Any, prefix: str, where: str):
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: {prefix or 'config'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean {prefix}{close[0]!s}?)" if close else f" (known: {', '.join(fields)})"
            raise ConfigError(f"{where}: {prefix}{key}: unknown key{hint}")
    values = {}
    for name, f in fields.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            values[name] = _build(tp, raw.get(name, {}) or {}, f"{prefix}{name}.", where)
        elif name in raw:
            values[name] = _check_value(raw[name], tp, prefix + name, dict(f.metadata), where)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: {prefix}{name}: required key missing")
    return cls(**values)


def parse_config(raw: dict, where: str = "<config>") -> dict:
    """Validate a config mapping and return it with every default filled in.

    Raises:
        ConfigError: unknown key (with a close match), wrong type, value out of range.
    """
    return dataclasses.asdict(_build(RunConfig, raw, "", where))


def read_yaml(path: str | Path) -> dict:
    """Read a YAML config file.

    Raises:
        ConfigError: missing file, or malformed YAML (with the file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}{line}: malformed YAML ({problem})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config must be a mapping with a 'name'")
    return raw


def set_dotted(cfg: dict, key: str, value: Any) -> None:
    """Set ``cfg["a"]["b"] = value`` for ``key = "a.b"``."""
    *parents, leaf = key.split(".")
    for p in parents:
        cfg = cfg.setdefault(p, {})
    cfg[leaf] = value


def _dataset_classes(data: dict, where: str) -> tuple[list[str], str]:
    """Class names and mask format of the config's dataset."""
    if data["dataset"] == "magnetic_tile":
        return list(CLASSES), "binary"
    if not data["root"]:
        raise ConfigError(f"{where}: data.root: a folder dataset needs its folder")
    spec = describe_dataset(data["root"], data["classes"], data["mask_format"])
    return list(spec.classes), spec.mask_format


def _check_native(cfg: dict, where: str) -> None:
    """Sizes of the native input mode that the network can take (multiples of its stride)."""
    data = cfg["data"]
    for key in ("crop_size", "tile_size"):
        if data[key] % STRIDE:
            raise ConfigError(f"{where}: data.{key}: {data[key]} is not a multiple of the network's stride {STRIDE}")
    if data["input"] != "native":
        return
    if data["crop_size"] > data["tile_size"]:
        raise ConfigError(f"{where}: data.crop_size {data['crop_size']} exceeds data.tile_size {data['tile_size']}")
    if cfg["train"]["steps"] is None:
        raise ConfigError(f"{where}: data.input native: needs a budget in optimizer steps (train.steps)")
    if "copy_paste" in parse_augment(data["augment"]):
        raise ConfigError(f"{where}: data.augment: copy_paste pastes between square images; not with native input")


def _split_digest(data: dict) -> str | None:
    """The SHA-256 of the fold file a Magnetic Tile config runs on, part of its runs' identity.

    The two first partitions (``grouped`` and ``random``) are frozen: their
    digests are pinned (:data:`defectlib.splits.FROZEN_SPLITS`, checked by a
    test) and left out of the hash so that their records keep theirs.
    Folder datasets carry their own ``splits.json`` and get None.
    """
    if data["dataset"] != "magnetic_tile" or data["split"] in FROZEN_SPLITS:
        return None
    return sha256_file(split_path(data["split"]))


def resolve_config(raw: dict, profile: str | None = None, overrides: dict[str, Any] | None = None,
                   where: str = "<config>") -> dict:
    """Validate a config mapping, apply the profile's and the given dotted-key overrides, fill defaults.

    Raises:
        ConfigError: unknown key, wrong type or value (naming ``where`` and the key).
    """
    raw = copy.deepcopy(raw)
    resolved_before = raw.get("profile")   # a config resolved before already holds its profile's overrides
    profile = profile or raw.pop("profile", None) or current_profile()
    if profile not in PROFILES:
        raise ConfigError(f"{where}: profile {profile!r}; expected one of {PROFILES}")
    raw.pop("profile", None)
    smoke = {}
    if profile == "smoke" and resolved_before != "smoke":
        smoke = {**SMOKE_OVERRIDES, **(SMOKE_STEP_OVERRIDES if (raw.get("train") or {}).get("steps") else {})}
    for key, value in {**smoke, **(overrides or {})}.items():
        set_dotted(raw, key, value)
    cfg = parse_config(raw, where)
    cfg["data"]["classes"], cfg["data"]["mask_format"] = _dataset_classes(cfg["data"], where)
    encoder = cfg["model"]["encoder"]
    if not timm.is_model(encoder):
        close = difflib.get_close_matches(encoder, timm.list_models(), n=3)
        raise ConfigError(f"{where}: model.encoder: timm knows no encoder {encoder!r}"
                          + (f" (did you mean {', '.join(close)}?)" if close else ""))
    try:  # check the loss's name and parameters now, not after the data are loaded
        build_loss(cfg["loss"]["name"], None, cfg["loss"]["params"])
    except ValueError as exc:
        raise ConfigError(f"{where}: loss: {exc}") from exc
    try:
        parse_augment(cfg["data"]["augment"])
    except ValueError as exc:
        raise ConfigError(f"{where}: data.augment: {exc}") from exc
    _check_native(cfg, where)
    cfg["data"]["split_sha256"] = _split_digest(cfg["data"])
    train = cfg["train"]
    if train["steps"] is not None and train["val_every"] is None:
        train["val_every"] = max(1, train["steps"] // 10)
    if train["val_every"] is not None and train["steps"] is None:
        raise ConfigError(f"{where}: train.val_every: needs train.steps (a budget in optimizer steps)")
    if train["steps"] is not None and train["steps"] % train["val_every"]:
        raise ConfigError(f"{where}: train.steps {train['steps']} is not a multiple of train.val_every "
                          f"{train['val_every']} (validation periods of equal length)")
    cfg["profile"] = profile
    return cfg


def on_partition(cfg: dict, partition: str) -> dict:
    """``cfg`` on another fold partition of its dataset: ``grouped`` (the first region groups), ``regions``
    (the corrected region groups) or ``random`` (image level).

    The random partition exists to measure, once, how much a random split
    flatters a recipe (chapter 7). Its config gets ``-random`` appended to
    its name, so its runs are stored and named apart. A config already on
    ``partition`` is returned unchanged; going back from ``random`` needs the
    grouped partition the config came from (``regions`` for chapter 6's).
    """
    if partition == cfg["data"]["split"]:
        return cfg
    name = cfg["name"].removesuffix("-random") + ("-random" if partition == "random" else "")
    return resolve_config(cfg, cfg.get("profile"), {"data.split": partition, "name": name})


def _config_path(path: str | Path) -> Path:
    """A config path as given, or relative to the project root when it is not found as given."""
    path = Path(path)
    if not path.is_file() and not path.is_absolute() and (project_root() / path).is_file():
        return project_root() / path
    return path


def _deep_merge(base: dict, over: dict) -> dict:
    """``base`` with ``over`` laid on top, mapping by mapping (``over`` wins on every leaf it names)."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def read_config(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """A config file's mapping, with the config it extends (``base: other.yaml``) merged beneath it.

    ``base`` is a path relative to the config's folder, else to the project
    root; bases may extend bases.  The result no longer names its base, so a
    config that extends another hashes as if it had been written out in full.

    Raises:
        ConfigError: missing or malformed file, or bases that extend each other in a circle.
    """
    path = _config_path(path)
    raw = read_yaml(path)
    if "base" not in raw:
        return raw
    base = raw.pop("base")
    if not isinstance(base, str):
        raise ConfigError(f"{path}: base: expected the path of the config this one extends, got {base!r}")
    base_path = path.parent / base if (path.parent / base).is_file() else _config_path(base)
    if base_path.resolve() in _seen or base_path.resolve() == path.resolve():
        raise ConfigError(f"{path}: base: {base} extends this config again (a circle of bases)")
    return _deep_merge(read_config(base_path, (*_seen, path.resolve())), raw)


def parse_assignments(items: list[str] | None) -> dict[str, Any]:
    """``["train.steps=400", "data.augment=d4"]`` as dotted-key overrides, values read as YAML
    (``400`` an int, ``true`` a bool, ``[1, 2]`` a list, ``null`` None).

    Raises:
        ConfigError: an item without ``=`` or with an empty key.
    """
    out: dict[str, Any] = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.steps=400")
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({exc})") from exc
    return out


def load_config(path: str | Path, profile: str | None = None, overrides: dict[str, Any] | None = None) -> dict:
    """Read, validate and resolve a YAML config (relative paths also from the project root; ``base:``
    merged, see :func:`read_config`).

    Raises:
        ConfigError: missing file, malformed YAML (with line), or a config that does not fit the schema.
    """
    path = _config_path(path)
    return resolve_config(read_config(path), profile, overrides, where=str(path))


def load_family(path: str | Path, profile: str | None = None) -> dict[str, dict]:
    """The arms of an experiment family: ``{arm: resolved config}``.

    A family YAML names a ``base`` config and its ``arms``.  An arm is either
    the path of another config, used as it is (so that its stored runs are
    reused; e.g. the baseline as the reference arm), or a mapping of
    dotted-key overrides of the base, whose config is named
    ``<family>-<arm>``::

        family: loss
        base: configs/baseline.yaml
        arms:
          ce: configs/baseline.yaml
          dice: {loss.name: dice}

    Raises:
        ConfigError: a malformed family file or arm (naming the file and the arm).
    """
    path = _config_path(path)
    raw = read_yaml(path)
    unknown = set(raw) - {"family", "description", "base", "arms"}
    if unknown or not isinstance(raw.get("arms"), dict) or not isinstance(raw.get("base"), str):
        raise ConfigError(f"{path}: a family needs 'family', 'base' (a config path) and 'arms' (a mapping)"
                          + (f"; unknown key(s) {sorted(unknown)}" if unknown else ""))
    base = read_config(raw["base"])
    arms = {}
    for arm, spec in raw["arms"].items():
        where = f"{path}: arms.{arm}"
        if isinstance(spec, str):
            arms[arm] = load_config(spec, profile)
        elif isinstance(spec, dict):
            arm_raw = copy.deepcopy(base)
            arm_raw["name"] = f"{raw.get('family', path.stem)}-{arm}"
            for key, value in spec.items():   # part of the arm's config, so the smoke profile still shrinks it
                set_dotted(arm_raw, key, value)
            arms[arm] = resolve_config(arm_raw, profile, where=where)
        else:
            raise ConfigError(f"{where}: expected a config path or a mapping of overrides, got {spec!r}")
    return arms


def _later_settings(cls=RunConfig, prefix: str = "") -> dict[str, Any]:
    """``{dotted key: default}`` of every setting marked :func:`_later`."""
    out = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out.update(_later_settings(hints[f.name], f"{prefix}{f.name}."))
        elif f.metadata.get("later"):
            out[prefix + f.name] = f.default
    return out


#: Settings added after the first run records, with their defaults: left out of the hash at their default.
LATER_SETTINGS: dict[str, Any] = _later_settings()


def config_hash(cfg: dict) -> str:
    """Short SHA-256 of the *resolved* config's canonical JSON (every default included).

    Settings added after the first records (:data:`LATER_SETTINGS`) count only
    where they differ from their default, so a record made before they
    existed keeps its hash and is reused (``tests/test_architecture.py``
    checks every committed record).
    """
    hashed = copy.deepcopy(cfg)
    for key, default in LATER_SETTINGS.items():
        *parents, leaf = key.split(".")
        node = hashed
        for p in parents:
            node = node.get(p, {})
        if leaf in node and node[leaf] == default:
            del node[leaf]
    return hashlib.sha256(json.dumps(hashed, sort_keys=True).encode()).hexdigest()[:12]


def check_winner_config(path: str | Path, arm_cfg: dict) -> str:
    """Check that the committed config at ``path`` is the selected arm: the same resolved config and hash.

    Returns a one-line summary; raises :class:`ConfigError` naming both hashes when they differ.
    """
    committed = load_config(path, arm_cfg.get("profile"))
    want, got = config_hash(arm_cfg), config_hash(committed)
    if got != want:
        raise ConfigError(f"{path}: config hash {got} ({committed['name']}), not the selected arm's {want} "
                          f"({arm_cfg['name']})")
    return f"{path}: {committed['name']}, config hash {got}, the selected arm's"
