"""Face repair: masks, degradations, OpenCV baselines, a masked-completion network, per-band evaluation."""
