"""Privacy: prove it (DP-SGD on the discriminator's real-image gradients) and measure it (audits).

    validate.py        refuse recipes and layers that break the guarantee, before any work starts
    accounting.py      the privacy ledger: Opacus accountant, noise multiplier for a target epsilon, budget
    dp.py              the pieces: Poisson sampler, per-sample gradients, clipping and noise
    training.py        `make_private(trainer)` installs them in a trainer; `train_private(config)` trains
    audit.py           `audit_generator` / `audit_samples`: memorisation, membership inference, identity leakage
    audit_*.py         the audit's metrics (exact ROC), inputs, result types, figures and controls
    (the report-card sections for the guarantee and the audit live in `facegan.report.privacy_sections`)

Only the discriminator reads real faces, so only its gradient from real samples is clipped per sample
and noised; fakes cost no privacy, and the generator learns through the private discriminator
(post-processing). The guarantee covers the weights (export and checkpoint), not the run folder's
diagnostics (`samples/reals.png`, real-image logits in stats.jsonl), which stay with the data owner.
Privacy sits above training: it composes a `Trainer`, and training never imports it.
"""
from __future__ import annotations

__all__ = ["make_private", "train_private", "PrivateDiscriminator"]


def __getattr__(name: str):
    # Lazy: `import facegan.privacy.audit` should not pull in the trainer and Opacus.
    if name in __all__:
        from facegan.privacy import training

        return getattr(training, name)
    raise AttributeError(f"module 'facegan.privacy' has no attribute {name!r}")
