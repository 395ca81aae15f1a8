"""Differential privacy for training: DP-SGD on the discriminator's real-image gradients.

    validate.py    refuse options and layers that break the guarantee, before any work starts
    accounting.py  the privacy ledger: Opacus accountant, noise multiplier for a target epsilon, budget
    dp.py          per-sample gradients, clipping and noise, and `PrivateTrainer` (chosen by `make_trainer`)

Only the discriminator reads real faces, so only its gradient from real samples is clipped per sample
and noised; fakes cost no privacy, and the generator learns through the private discriminator
(post-processing). The guarantee covers the weights (export and checkpoint), not the run folder's
diagnostics (`samples/reals.png`, real-image logits in stats.jsonl), which stay with the data owner.
"""
