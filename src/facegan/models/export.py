"""Generator export: `config.json` + `model.safetensors`, and the `Generator` used to sample.

Loading never unpickles anything: weights come from safetensors, the architecture from JSON.
"""
from __future__ import annotations

import json
import numbers
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from facegan.errors import FaceganError
from facegan.files import check_format_version

EXPORT_FORMAT = "facegan-generator"
EXPORT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
# Keys save_export writes itself; metadata may not overwrite them (a "model" entry would change the architecture).
RESERVED_KEYS = ("format", "format_version", "facegan_version", "model")
# Beyond this, images kept in memory at once do not fit a typical machine; larger jobs are rendered in chunks.
MAX_IMAGE_BYTES = 4 * 2**30
MAX_SEED = 2**63
# XOR-ed into nuisance seeds (a 63-bit constant): their RNG streams differ from the identity seeds' ones.
_NUISANCE_SALT = 0x5DEECE66D2F3A1B7


def save_export(folder: str | os.PathLike, generator: nn.Module, model_config: Any, metadata: dict[str, Any]) -> Path:
    """Write `folder/config.json` and `folder/model.safetensors` atomically (readable as the umask allows).

    The dataset is recorded by its content hash (`dataset_hash`) and, when given as `dataset`, by absolute path.
    """
    from safetensors.torch import save

    from facegan.version import __version__
    from facegan.config import save_json
    from facegan.files import write_bytes_atomic

    reserved = sorted(set(metadata) & set(RESERVED_KEYS))
    if reserved:
        raise FaceganError(f"export metadata may not set the reserved key '{reserved[0]}' (reserved: {', '.join(RESERVED_KEYS)})")
    metadata = dict(metadata)
    if isinstance(metadata.get("dataset"), (str, os.PathLike)) and not str(metadata["dataset"]).startswith("builtin:"):
        # A relative path means nothing once the export is copied elsewhere; the hash identifies the content.
        metadata["dataset"] = os.path.abspath(metadata["dataset"])
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu().contiguous() for key, value in generator.state_dict().items()}
    # Same bytes as safetensors' save_file, but written through files.py: atomic, and with the umask's mode.
    write_bytes_atomic(folder / WEIGHTS_NAME, save(state, metadata={"format": EXPORT_FORMAT}))
    config = {
        **metadata,
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_VERSION,
        "facegan_version": __version__,
        "model": asdict(model_config),
    }
    save_json(config, folder / CONFIG_NAME)
    return folder


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between latent rows a and b (D,) at fractions t (T,) -> (T, D)."""
    a_unit, b_unit = a / a.norm(), b / b.norm()
    omega = torch.arccos((a_unit * b_unit).sum().clamp(-1.0, 1.0))
    t = t.view(-1, 1)
    if omega.abs() < 1e-6:  # (nearly) parallel: plain linear interpolation is exact enough
        return (1 - t) * a + t * b
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


def check_seeds(seeds: Any) -> list[int]:
    """Seeds as a list of ints in [0, 2**63); a single int is one seed. Anything else is a FaceganError."""
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        seeds = [seeds]
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Iterable):
        raise FaceganError(f"seeds must be integers, e.g. range(16) or [3, 7], got {seeds!r:.60}")
    checked = []
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise FaceganError(f"seeds must be integers, e.g. range(16) or [3, 7], got {seed!r:.60}")
        if not 0 <= seed < MAX_SEED:
            raise FaceganError(f"seeds must be in [0, 2**63), got {seed}")
        checked.append(int(seed))
    return checked


def check_truncation(truncation: Any) -> float:
    """psi as a float in [0, 1] (NaN, strings and out-of-range values are refused in one line)."""
    if isinstance(truncation, bool) or not isinstance(truncation, numbers.Real) or not 0.0 <= float(truncation) <= 1.0:
        raise FaceganError(f"--truncation must be between 0 and 1, got {truncation!r:.60}")
    return float(truncation)


def _check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or not 1 <= batch_size <= 65536:
        raise FaceganError(f"batch_size must be an integer from 1 to 65536, got {batch_size!r:.60}")
    return int(batch_size)


def latents_for_seeds(seeds: Iterable[int], z_dim: int) -> torch.Tensor:
    """One latent per seed, each from its own RNG, so an image depends only on its seed: (N, z_dim)."""
    rows = [torch.randn(z_dim, generator=torch.Generator().manual_seed(int(seed))) for seed in seeds]
    if not rows:
        raise FaceganError("no seeds given")
    return torch.stack(rows)


@torch.inference_mode()
def render(module: nn.Module, z: torch.Tensor, truncation: float = 1.0, batch_size: int = 64) -> np.ndarray:
    """Latents (N, z_dim) -> uint8 (N, H, W, C), in eval mode (BatchNorm uses running statistics).

    Truncation pulls z toward its mean (0) by the factor psi; a module that normalises z first
    (`truncates_latent`) takes psi itself and applies it after the normalisation, where it has an effect.
    The module's train/eval mode is restored.
    """
    from facegan.images import to_uint8

    truncation = check_truncation(truncation)
    batch_size = _check_batch_size(batch_size)
    was_training = module.training
    device = next(module.parameters()).device
    module.eval()
    try:
        if getattr(module, "truncates_latent", False):
            chunks = [to_uint8(module(z[i : i + batch_size].to(device), truncation=truncation)) for i in range(0, len(z), batch_size)]
        else:
            chunks = [to_uint8(module(z[i : i + batch_size].to(device) * truncation)) for i in range(0, len(z), batch_size)]
    finally:
        module.train(was_training)
    return torch.cat(chunks).numpy()


class Generator:
    """A loaded generator: images depend only on (seed, truncation, batch_size), never on the call.

    At one batch size the bytes are identical on every call and whatever the other seeds in the batch;
    across batch sizes a pixel can differ by one grey level (float kernels sum in a different order
    for other batch shapes; measured on the stable architecture: 26 of 196,608 values at 64 vs 1).
    """

    def __init__(self, module: nn.Module, model_config: Any, metadata: dict[str, Any] | None = None, device: str | torch.device = "cpu") -> None:
        self.device = _device(device)
        self.module = module.eval().requires_grad_(False)
        try:
            self.module.to(self.device)
        except (RuntimeError, AssertionError) as error:  # e.g. "Torch not compiled with CUDA enabled"
            raise FaceganError(f"cannot use device '{device}' ({str(error).splitlines()[0]}); pass --device cpu") from None
        self.config = model_config
        self.metadata = dict(metadata or {})
        # "sha256:<hex>" of model.safetensors when loaded from an export: the model named in every image's provenance.
        self.export_hash: str | None = None

    @property
    def fingerprint_id(self) -> str | None:
        """The learned fingerprint the training data carried (recorded in the export), if any."""
        fingerprint = self.metadata.get("fingerprint")
        return str(fingerprint.get("id")) if isinstance(fingerprint, dict) and fingerprint.get("id") else None

    def provenance(self, action: str, seeds: str | None = None):
        """The provenance record of images this generator makes (see facegan.provenance)."""
        from facegan.provenance.record import TRAINED, Provenance

        return Provenance(source_type=TRAINED, action=action, model=self.export_hash, seeds=seeds, fingerprint=self.fingerprint_id)

    @property
    def resolution(self) -> int:
        return self.config.resolution

    @property
    def channels(self) -> int:
        return self.config.channels

    @property
    def z_dim(self) -> int:
        return self.config.z_dim

    @property
    def image_bytes(self) -> int:
        """Bytes of one uint8 image."""
        return self.resolution * self.resolution * self.channels

    def z_for_seeds(self, seeds: Iterable[int]) -> torch.Tensor:
        """One latent per seed, each from its own RNG: (N, z_dim)."""
        return latents_for_seeds(check_seeds(seeds), self.z_dim)

    def synthesize(self, z: torch.Tensor, truncation: float = 1.0, batch_size: int = 64) -> np.ndarray:
        """Latents (N, z_dim) -> uint8 (N, H, W, C); see `render`."""
        if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[1] != self.z_dim:
            raise FaceganError(f"z must be a tensor of shape (N, {self.z_dim}), got {getattr(z, 'shape', type(z).__name__)}")
        if not torch.isfinite(z).all():
            raise FaceganError("z contains NaN or infinite values")
        self._check_fits(len(z), "latents")
        return render(self.module, z, truncation, batch_size)

    def sample(self, seeds: Iterable[int], truncation: float = 1.0, batch_size: int = 64) -> np.ndarray:
        """Images for the given seeds: uint8 (N, H, W, C). For more than fit in memory, use `iter_samples`."""
        if hasattr(seeds, "__len__") and not isinstance(seeds, (str, bytes)):
            self._check_fits(len(seeds), "seeds")  # before a list of a hundred million seeds is built
        seeds = check_seeds(seeds)
        self._check_fits(len(seeds), "seeds")
        return self.synthesize(self.z_for_seeds(seeds), truncation, batch_size)

    def iter_samples(self, seeds: Iterable[int], truncation: float = 1.0, batch_size: int = 64) -> Iterator[tuple[list[int], np.ndarray]]:
        """(seeds, images) chunks of at most `batch_size`, so any number of seeds streams in bounded memory."""
        truncation = check_truncation(truncation)
        batch_size = _check_batch_size(batch_size)
        chunk: list[int] = []
        for seed in seeds:
            chunk.append(seed)
            if len(chunk) == batch_size:
                yield chunk, self.sample(chunk, truncation, batch_size)
                chunk = []
        if chunk:
            yield chunk, self.sample(chunk, truncation, batch_size)

    def interpolate(self, seed_a: int, seed_b: int, num_steps: int = 8, truncation: float = 1.0) -> np.ndarray:
        """Spherical interpolation in z from seed_a to seed_b: uint8 (num_steps, H, W, C)."""
        if isinstance(num_steps, bool) or not isinstance(num_steps, numbers.Integral) or num_steps < 2:
            raise FaceganError(f"--steps must be an integer of at least 2, got {num_steps!r:.60}")
        self._check_fits(int(num_steps), "steps")
        z = self.z_for_seeds([seed_a, seed_b])
        path = slerp(z[0], z[1], torch.linspace(0.0, 1.0, int(num_steps)))
        return self.synthesize(path, truncation)

    # ---- identity-aware generators (trained with --condition identity) ---------------------------------
    @property
    def identity_aware(self) -> bool:
        """True when z splits into an identity part (z[:identity_dim]) and a nuisance part (the rest)."""
        return self.identity_dim > 0

    @property
    def identity_dim(self) -> int:
        """Entries of z that code the identity (0 for a plain generator)."""
        identity = self.metadata.get("identity")
        dim = identity.get("identity_dim") if isinstance(identity, dict) else None
        if isinstance(dim, bool) or not isinstance(dim, int) or not 0 < dim < self.z_dim:
            return 0
        return dim

    def z_for_identity(self, identity_seed: int, nuisance_seeds: Iterable[int]) -> torch.Tensor:
        """One identity part (from identity_seed's own RNG) with each nuisance seed's part: (K, z_dim)."""
        if not self.identity_aware:
            raise FaceganError("this generator was not trained with --condition identity (it has no identity part in z); "
                               "train one with `facegan train --condition identity`")
        (identity_seed,) = check_seeds([identity_seed])
        if hasattr(nuisance_seeds, "__len__") and not isinstance(nuisance_seeds, (str, bytes)):
            self._check_fits(len(nuisance_seeds), "nuisance seeds")
        seeds = check_seeds(nuisance_seeds)
        if not seeds:
            raise FaceganError("no nuisance seeds given: pass one seed per image of this identity, e.g. range(8)")
        self._check_fits(len(seeds), "nuisance seeds")
        dim = self.identity_dim
        identity = torch.randn(dim, generator=torch.Generator().manual_seed(identity_seed))
        # The nuisance RNG is offset from the identity one, so identity seed 3 and nuisance seed 3 are unrelated draws.
        nuisance = [torch.randn(self.z_dim - dim, generator=torch.Generator().manual_seed(seed ^ _NUISANCE_SALT)) for seed in seeds]
        return torch.cat([identity.expand(len(seeds), dim), torch.stack(nuisance)], dim=1)

    def sample_identity(self, identity_seed: int, nuisance_seeds: Iterable[int], truncation: float = 1.0,
                        batch_size: int = 64) -> np.ndarray:
        """K images of one new person: uint8 (K, H, W, C), deterministic in (identity_seed, nuisance_seeds, truncation)."""
        return self.synthesize(self.z_for_identity(identity_seed, nuisance_seeds), truncation, batch_size)

    def _check_fits(self, count: int, what: str) -> None:
        needed = count * self.image_bytes
        if needed > MAX_IMAGE_BYTES:
            raise FaceganError(
                f"{count} {what} would need ~{needed / 2**30:,.1f} GiB of images in memory (at most {MAX_IMAGE_BYTES // 2**30} GiB); "
                "render them in chunks with Generator.iter_samples, or `facegan sample --out-dir`"
            )


def _device(device: Any) -> torch.device:
    try:
        return torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise FaceganError(f"unknown device {device!r:.60}; pass cpu or cuda") from None



def load_checked_weights(net: nn.Module, weights_path: Path, what: str, export_again: str) -> str:
    """Load a safetensors file into `net` strictly, refusing corrupt, mismatched or non-finite weights;
    returns the weights' version (the first 16 hex digits of their sha256), shared by the non-GAN exports."""
    import hashlib

    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from facegan.run import EXPORT_CONFIG_NAME

    try:
        weights = weights_path.read_bytes()
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as error:
        raise FaceganError(f"{weights_path} is corrupt or unreadable ({str(error)[:120]}); {export_again}") from None
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError:
        raise FaceganError(f"{weights_path} does not match the network in {EXPORT_CONFIG_NAME}; the export is inconsistent") from None
    for name, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise FaceganError(f"{what} weights contain NaN or infinite values ({weights_path}, '{name}'); retrain it")
    return hashlib.sha256(weights).hexdigest()[:16]

def resolve_export_path(path: str | os.PathLike) -> Path:
    """A run folder, an export folder or a model.safetensors file -> the export folder (decided by `Run.locate`)."""
    from facegan.run import Run

    if not isinstance(path, (str, os.PathLike)):
        raise FaceganError(f"expected a path to a run or an export, got {path!r:.60}")
    return Run.locate(path).export_dir


def export_hash(path: str | os.PathLike) -> str | None:
    """"sha256:<hex>" of the generator weights of a run or export (what provenance names as the model), None if unreadable."""
    import hashlib

    try:
        return "sha256:" + hashlib.sha256((resolve_export_path(path) / WEIGHTS_NAME).read_bytes()).hexdigest()
    except (OSError, FaceganError):
        return None


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu") -> Generator:
    """Load a generator from a run folder, an export folder or its model.safetensors."""
    import hashlib

    from safetensors import SafetensorError
    from safetensors.torch import load

    from facegan.config import from_dict
    from facegan.models import build_generator
    from facegan.models.config import ModelConfig

    folder = resolve_export_path(path)
    config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):  # RecursionError: "[[[[..." nested too deep
        raise FaceganError(f"{config_path} is corrupt; export the model again") from None
    except OSError as error:
        raise FaceganError(f"cannot read {config_path} ({error.strerror})") from None
    if not isinstance(config, dict) or config.get("format") != EXPORT_FORMAT:
        raise FaceganError(f"{config_path} is not a facegan generator export (format {config.get('format') if isinstance(config, dict) else None!r})")
    check_format_version(config, config_path, folder, "generator", EXPORT_VERSION, "export the model again")
    model_config = _export_model_config(config, config_path, from_dict, ModelConfig)
    module = _build_export_module(config, config_path, model_config, build_generator)
    try:
        weights = weights_path.read_bytes()
        state = load(weights)
    except (SafetensorError, OSError, ValueError) as error:
        raise FaceganError(f"{weights_path} is corrupt or unreadable ({error}); export the model again") from None
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError:
        raise FaceganError(f"{weights_path} does not match the architecture in {CONFIG_NAME}; the export is inconsistent") from None
    for name, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            kind = "NaN" if torch.isnan(tensor).any() else "infinite values"
            raise FaceganError(
                f"the export's weights contain {kind} ({weights_path}, '{name}'); the run diverged — retrain or use an earlier checkpoint"
            )
    metadata = {key: value for key, value in config.items() if key != "model"}
    generator = Generator(module, model_config, metadata, device)
    generator.export_hash = "sha256:" + hashlib.sha256(weights).hexdigest()
    return generator


def _build_export_module(config: dict[str, Any], config_path: Path, model_config: Any, build_generator: Any) -> nn.Module:
    """The network an export's weights fit: the plain generator, or its identity-conditional wrapper."""
    base = build_generator(model_config)
    identity = config.get("identity")
    if not isinstance(identity, dict) or identity.get("mode") != "embedding":
        return base
    from facegan.models.conditional import ConditionalGenerator

    count, dim = identity.get("num_identities"), identity.get("identity_dim")
    if any(isinstance(value, bool) or not isinstance(value, int) for value in (count, dim)):
        raise FaceganError(f"{config_path} has an identity section without integer num_identities/identity_dim; export the model again")
    try:
        return ConditionalGenerator(model_config, count, dim, base)
    except FaceganError as error:
        raise FaceganError(f"{config_path} describes an impossible identity model ({error}); export the model again") from None


def _export_model_config(config: dict[str, Any], config_path: Path, from_dict: Any, model_config_class: type) -> Any:
    """The export's ModelConfig, validated, with resolution and channels set (an export is fully resolved)."""
    model = config.get("model")
    if not isinstance(model, dict):
        raise FaceganError(f"{config_path} has no model description ('model' mapping); export the model again")
    try:
        model_config = from_dict(model_config_class, model, prefix="model.")
        model_config.validate()
    except FaceganError as error:
        raise FaceganError(f"{config_path} describes an impossible model ({error}); export the model again") from None
    if not model_config.resolution or not model_config.channels:
        raise FaceganError(f"{config_path} leaves model.resolution or model.channels unset; export the model again")
    return model_config
