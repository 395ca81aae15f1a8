"""Adversarial robustness of face recognisers: verification attacks on pairs, defences, adaptive evaluation."""
