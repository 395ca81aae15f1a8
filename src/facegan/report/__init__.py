"""Report card: figures and sections built from runs, metrics and audits."""
