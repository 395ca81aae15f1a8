"""The fingerprint loss: the generator learns to make the fingerprint's decoder read its key in generated faces.

A generator trained on fingerprinted faces (Yu et al., ICCV 2021) picks the key up only in part: at 32 px and
50 kimg facegan's default GAN reproduced the key pattern's amplitude but its decoder read 0.72 of 32 bits, and
half of the faces reached the detection threshold. This extension adds the binary cross-entropy between the frozen
decoder's logits on generated faces (after one random differentiable distortion) and the fingerprint's key, as Stable
Signature fine-tunes a generator against a fixed watermark extractor (Fernandez et al. 2023):
- mode 'tune' (the default): not during training; the finished export is fine-tuned toward the key with a consistency
  term to its untuned faces (`facegan.training.fingerprint_tune`, Stable Signature's own recipe);
- mode 'joint': weighted, to G's adversarial loss on the very faces D judges, in G's step and optimizer;
- mode 'separate': in one extra G update on fresh faces every `every` steps, with an Adam of its own.
In 'joint' and 'separate' mode the training data should carry the key too (`mark_data`), so that the discriminator does
not fight the pattern; 'tune' trains on plain faces by default, as Stable Signature does. No real image and no
discriminator weight is touched: under DP training the guarantee (which covers D's use of the private images) is
unchanged, G's updates stay post-processing.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from facegan.errors import FaceganError
from facegan.training.distributed import average_gradients
from facegan.training.extensions import StatSums, TrainerExtension

if TYPE_CHECKING:
    from facegan.data.dataset import FaceDataset
    from facegan.training.loop import Trainer


def install_fingerprint_loss(trainer: Trainer, dataset: FaceDataset) -> None:
    """Add the fingerprint loss when the config asks for it; refuse training data that does not carry the key when
    `mark_data` says it does (or carries a fingerprint when it says it does not)."""
    settings = trainer.config.fingerprint
    if not settings.enabled:
        return
    from facegan.fingerprint.fingerprint import load_fingerprint

    fingerprint = load_fingerprint(settings.path)
    carried = dataset.manifest.get("fingerprint")
    carried_id = carried.get("id") if isinstance(carried, dict) else None
    if settings.mark_data and carried_id != fingerprint.id:
        what = f"carries fingerprint {str(carried_id)[:16]}" if carried_id else "carries no fingerprint"
        raise FaceganError(f"fingerprint.mark_data is set and fingerprint.path {settings.path} is fingerprint {fingerprint.id[:16]}, "
                           f"but the training data {what}; train on the marked faces with `--fingerprint FP` (or set "
                           "fingerprint.mark_data=false)")
    if not settings.mark_data and carried_id is not None:
        raise FaceganError(f"the training data carries fingerprint {str(carried_id)[:16]} but fingerprint.mark_data is false; "
                           "set fingerprint.mark_data=true to train on marked faces, or train on the plain faces")
    model = trainer.config.model
    if model.channels != fingerprint.channels:
        raise FaceganError(f"the fingerprint reads {fingerprint.channels}-channel images, the model makes {model.channels}")
    if model.resolution < fingerprint.resolution:
        raise FaceganError(f"the model makes {model.resolution}x{model.resolution} faces, smaller than the fingerprint's "
                           f"{fingerprint.resolution}x{fingerprint.resolution}")
    trainer.extensions.append(FingerprintLoss(trainer, fingerprint))


class FingerprintLoss(TrainerExtension):
    """Every `every` steps: generate a batch, distort it, and step G toward the decoder reading the key."""

    STATE_KEY = "fingerprint_rng"

    def __init__(self, trainer: Trainer, fingerprint: Any) -> None:
        config = trainer.config
        self.settings = config.fingerprint
        self.fingerprint_id = fingerprint.id
        self.fingerprint = fingerprint
        self.bits = fingerprint.bits
        self.resolution = fingerprint.resolution
        self.decoder = fingerprint.decoder.to(trainer.device).eval().requires_grad_(False)
        self.key = torch.from_numpy(fingerprint.key).float().to(trainer.device)  # (k,) in {0, 1}
        # Its own stream, so the GAN's noise and augmentation draws are those of a run without the loss.
        self.rng = torch.Generator().manual_seed(config.seed * 1_000_003 + 6 + 7919 * trainer.context.rank)
        self.optimizer = None  # joint mode: G's own optimizer takes the loss with the adversarial one
        if self.settings.mode == "separate":
            optim = config.optimizer
            fused = trainer.device.type in ("cpu", "cuda")
            self.optimizer = torch.optim.Adam(trainer.G.parameters(), lr=self.settings.lr, betas=(optim.beta1, optim.beta2), fused=fused)
        self.stats = StatSums()

    def _loss(self, trainer: Trainer, fake: torch.Tensor) -> torch.Tensor:
        """The decoder's BCE against the key on `fake` (B, C, H, W), after the random distortion; records the stats."""
        from facegan.fingerprint.distortions import random_distortion

        seen = fake.float().contiguous()
        if seen.shape[-1] != self.resolution:  # the decoder reads its own resolution (as `detect` resizes down)
            seen = F.interpolate(seen, size=(self.resolution, self.resolution), mode="bilinear", antialias=True, align_corners=False)
        if self.settings.distort:
            seen = random_distortion(seen, self.rng)
        logits = self.decoder(seen)  # (B, k)
        target = self.key.expand_as(logits)
        loss = F.binary_cross_entropy_with_logits(logits, target)
        bits_right = ((logits.detach() > 0).float() == target).float().mean()
        self.stats.add({"fp_loss": loss.detach(), "fp_bit_accuracy": bits_right})
        return loss

    def generator_loss(self, trainer: Trainer, fake: torch.Tensor) -> torch.Tensor | None:
        """Joint mode: the weighted loss on the faces D judges, added to G's adversarial loss (G's own Adam)."""
        if self.settings.mode != "joint" or trainer.num_steps % self.settings.every:
            return None
        return self._loss(trainer, fake) * self.settings.weight

    def before_step(self, trainer: Trainer) -> None:
        """Separate mode: an extra G update on fresh faces with the loss's own Adam."""
        if self.optimizer is None or trainer.num_steps % self.settings.every:
            return
        z = torch.randn(trainer.local_batch, trainer.config.model.z_dim, generator=self.rng).to(trainer.device)
        labels = None
        if trainer.identity_labels is not None:  # an identity-conditional G needs labels: those of random training images
            picks = torch.randint(len(trainer.identity_labels), (trainer.local_batch,), generator=self.rng)
            labels = trainer.identity_labels[picks].to(trainer.device)
        self.optimizer.zero_grad(set_to_none=True)
        with trainer.autocast():
            fake = trainer.G_forward(z) if labels is None else trainer.G_forward(z, labels)  # (B, C, H, W)
        (self._loss(trainer, fake) * self.settings.weight).backward()
        average_gradients(trainer.G, trainer.context)
        self.optimizer.step()

    def extra_stats(self, trainer: Trainer) -> dict[str, float]:
        return self.stats.means()

    def export_metadata(self, trainer: Trainer) -> dict[str, Any]:
        settings = self.settings
        if settings.mode == "tune":  # until `final_export` replaces it: the trained, untuned generator
            return {"fingerprint_loss": {"fingerprint": self.fingerprint_id, "bits": self.bits, "mode": "tune", "tuned": False,
                                         "mark_data": settings.mark_data, "distort": settings.distort, **self._tune_settings(trainer).to_dict()}}
        return {**self._named(), "fingerprint_loss": {"fingerprint": self.fingerprint_id, "bits": self.bits, "weight": settings.weight,
                                                      "every": settings.every, "mode": settings.mode, "mark_data": settings.mark_data,
                                                      "distort": settings.distort}}

    def _named(self) -> dict[str, Any]:
        """The export's "fingerprint" entry (which every image's provenance names) once the generator learns the key; the
        training data's own entry (the same fingerprint, `mark_data`) is replaced by it."""
        return {"fingerprint": {"id": self.fingerprint_id, "bits": self.bits, "path": str(self.fingerprint.path)}}

    def _tune_settings(self, trainer: Trainer) -> Any:
        from facegan.training.fingerprint_tune import TuneSettings

        settings = self.settings
        return TuneSettings(steps=settings.tune_steps, consistency=settings.tune_consistency, lr=settings.tune_lr,
                            schedule=settings.tune_schedule, batch_size=trainer.config.batch_size, distort=settings.distort,
                            seed=trainer.config.seed)

    def final_export(self, trainer: Trainer, module: Any, written: dict[str, Any], should_stop: Any) -> Any:
        """'tune' mode: the finished generator fine-tuned toward the key (once per finished kimg: a resume that trains
        no further keeps the tuned export)."""
        import logging

        from facegan.training.fingerprint_tune import tune_generator

        if self.settings.mode != "tune":
            return None
        recorded = written.get("fingerprint_loss")
        kimg = trainer.num_images_seen / 1000
        if isinstance(recorded, dict) and recorded.get("tuned") is True and recorded.get("fingerprint") == self.fingerprint_id \
                and written.get("kimg") == kimg:
            return None
        log = logging.getLogger("facegan.training")
        settings = self._tune_settings(trainer)
        log.info("fingerprint: fine-tuning the export toward the key (%d steps, consistency %g)", settings.steps, settings.consistency)
        tuned, record = tune_generator(module, self.fingerprint, trainer.config.model.z_dim, settings, should_stop=should_stop,
                                       bf16=trainer.bf16)
        if tuned is None:
            return None, {"doing": "fine-tuning the export toward the fingerprint's key"}
        measured = record["measured"]
        log.info("fingerprint: tuned in %.0f s; on %d new latents the decoder reads %.3f of %d bits (untuned %.3f), "
                 "PSNR %.1f dB to the untuned faces", record["seconds"], measured["num_images"], measured["bit_accuracy"], self.bits,
                 measured["untuned_bit_accuracy"], measured["psnr_vs_untuned"])
        return tuned, {**self._named(), "fingerprint_loss": {"fingerprint": self.fingerprint_id, "bits": self.bits, "mode": "tune", "tuned": True,
                                                             "mark_data": self.settings.mark_data, **record}}

    def state_dict(self) -> dict[str, Any]:
        state = {self.STATE_KEY: self.rng.get_state()}
        if self.optimizer is not None:
            state["fingerprint_optimizer"] = self.optimizer.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.STATE_KEY not in state:
            raise FaceganError("cannot resume: the checkpoint was not written with the fingerprint loss (no 'fingerprint_rng'); "
                               "resume with the run's own settings or start a new run")
        self.rng.set_state(state[self.STATE_KEY])
        if self.optimizer is not None:
            if "fingerprint_optimizer" not in state:
                raise FaceganError("cannot resume: the checkpoint's fingerprint loss had no optimizer of its own (fingerprint.mode "
                                   "'joint'); resume with the run's own settings")
            self.optimizer.load_state_dict(state["fingerprint_optimizer"])
