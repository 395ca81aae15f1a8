"""Learned fingerprints (Yu et al., ICCV 2021) on the built-in faces: do generators carry the key, and at what FD cost?

1. A codec (default: 32 bits, format 2's key-only pattern on a 16x16 grid at PSNR 32 dB) trained on the 100 built-in
   LFW faces at 32 px (or taken with --fingerprint FP), and the faces fingerprinted with it.
2. Three generators, facegan's `default` preset, same seed and kimg: GAN-fp, `train --fingerprint` with its defaults
   (trained on the plain faces, its export fine-tuned toward the key when training ends; --loss-set KEY=VALUE changes
   its settings, e.g. mark_data=true for Yu et al.'s marked training data plus the tune, or mode=joint), GAN-fp-data on
   the fingerprinted faces without any loss (Yu et al.'s data alone), GAN-plain on the plain faces; and GAN-embed,
   `facegan fingerprint embed` (its defaults) on GAN-plain.
3. Robustness table, bit accuracy and detection rate at FPR 1 % under each evaluation transform, for
   - N faces from each fingerprinted generator (GAN-fp, GAN-fp-data, GAN-embed),
   - the real faces encoded by the codec alone (the 20 held out of the codec's training, and all 100),
   and the false-positive rate on real faces that never went through the encoder and on N faces of GAN-plain.
4. The FD cost of the fingerprint: facegan's FD (face features) of each generator against the plain real faces;
   `ratio = FD_fp / FD_plain`, the mean over the training seeds --seed and --fd-seeds (GAN-fp and GAN-plain are
   trained once per seed: one seed's FD moves by about 10 %).
5. With --further-kimg K1,K2,...: does the key outlive more training? GAN-fp's tuned export is put back into its
   checkpoint and trained on with the fingerprint off (same plain faces, same learning rate), read after each K.

    .venv/bin/python benchmarks/fingerprint.py [--kimg 50] [--num 500] [--fd-seeds 1,2] [--further-kimg 2,5,10,20,50]
                                               [--fingerprint FP] [--out runs/bench-fingerprint]

Everything is reused when present under --out (delete a sub-folder to redo that part).

Measured 2026-12-04 on 2 CPU cores (--threads 2), --kimg 50 --num 500 --fd-seeds 1,2, the defaults (16x16 grid, 32 dB;
the tune: 1500 steps, consistency 100, lr 2e-4 on a cosine, bf16): codec read 0.981 / 0.980 (clean / JPEG 75) on its
20 held-out faces; GAN-fp 0.959 / 0.944, detected 100 % / 100 % at FPR 1 % (>= 24 of 32 bits, exact FPR 0.35 %);
GAN-embed 0.959 / 0.942, 100 % / 100 %; GAN-fp-data 0.617, 5.8 %; false positives: GAN-plain 0.4 % / 0.0 %,
never-encoded real faces 0 % (GAN-plain cropped to 80 %: 3.2 %). FD over seeds 0-2: unmarked 0.0922 / 0.0889 / 0.0796,
GAN-fp 0.0991 / 0.0934 / 0.0909: ratio = 1.087 (target <= 1.10; per seed 1.07, 1.05, 1.14), GAN-embed 0.0990 / 0.0935
/ 0.0910 (1.087: the same trained generators, as training is deterministic, tuned with other draws). With --loss-set
mark_data=true (the release before's default, marked data plus the tune): 0.964 / 0.958, FD 0.1063 / 0.1013 / 0.1031,
ratio = 1.192. The previous release's joint loss (--loss-set mode=joint --loss-set mark_data=true): 0.968 / 0.963,
ratio = 1.256. Total 768 s with the fingerprint, GAN-plain, GAN-fp-data and GAN-embed reused (GAN-fp: 245-255 s each,
120-127 s of it the tune). Further training (--further-kimg 2,5,10,20,50, 149 s): bits 0.950 / 0.928 / 0.869 / 0.743
/ 0.575, detected 99.8 / 99.6 / 96.0 / 53.0 / 1.8 %: the tuned key lives in the weights and more training on unmarked
faces washes it out.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/builtin-lfw32", help="prepared built-in faces at 32 px (made if missing)")
    parser.add_argument("--fingerprint", default=None, metavar="FP", help="an existing fingerprint (default: train one under --out)")
    parser.add_argument("--bits", type=int, default=None, help="key length (default: FingerprintConfig's, 32)")
    parser.add_argument("--steps", type=int, default=None, help="codec steps (default: FingerprintConfig's)")
    parser.add_argument("--kimg", type=float, default=50.0, help="GAN training length, each")
    parser.add_argument("--num", type=int, default=500, help="generated faces per generator for the tables and FD")
    parser.add_argument("--fpr", type=float, default=0.01)
    parser.add_argument("--loss-set", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting of GAN-fp's fingerprint loss, e.g. mode=joint or weight=0.05 (repeatable; default: the config's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fd-seeds", type=lambda text: [int(part) for part in text.split(",") if part], default=[],
                        metavar="S,S,...", help="also train GAN-fp and GAN-plain with these seeds; the FD ratio is then the mean over all seeds")
    parser.add_argument("--further-kimg", type=lambda text: sorted({float(part) for part in text.split(",") if part}), default=[],
                        metavar="K1,K2", help="5. does the key outlive more training? GAN-fp trained on for these kimg with the "
                        "fingerprint off, from its tuned export (e.g. 2,5,10,20,50)")
    parser.add_argument("--out", default="runs/bench-fingerprint")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default); 1 leaves a shared machine room")
    args = parser.parse_args()
    if any(not np.isfinite(kimg) or kimg <= 0 for kimg in args.further_kimg):
        raise SystemExit("error: --further-kimg takes positive kimg, e.g. 2,5,10")
    if any(seed < 0 for seed in args.fd_seeds):
        parser.error("--fd-seeds takes whole numbers of at least 0")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    from facegan import train
    from facegan.data.dataset import FaceDataset
    from facegan.demo import ensure_builtin_dataset
    from facegan.fingerprint import EVAL_TRANSFORMS, FingerprintConfig, apply_transform, detect, fingerprint_dataset, load_fingerprint, train_fingerprint
    from facegan.metrics import evaluate
    from facegan.models.export import load_generator
    from facegan.training.config import resolve_config

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    dataset = ensure_builtin_dataset(Path(args.data), 32)

    # ---- 1. the codec
    fp_path = Path(args.fingerprint) if args.fingerprint else out / "fingerprint"
    if (fp_path / "fingerprint.json").is_file():
        fingerprint = load_fingerprint(fp_path)
        print(f"reusing {fingerprint.describe()}")
    else:
        config = FingerprintConfig() if args.bits is None else FingerprintConfig(bits=args.bits)
        if args.steps:
            config.steps = args.steps
        fingerprint = train_fingerprint(dataset, fp_path, config, seed=args.seed)
        print(f"trained {fingerprint.describe()} in {fingerprint.metadata['seconds']:.0f} s")

    # ---- 2. the two generators
    marked_path = out / "data-fp"
    marked = FaceDataset.load(marked_path) if (marked_path / "manifest.json").is_file() else None
    if marked is None or marked.manifest.get("fingerprint", {}).get("id") != fingerprint.id:
        marked = fingerprint_dataset(dataset, fingerprint, marked_path)
    # GAN-fp learns the key from the fingerprint loss (`train --fingerprint`'s default: trained on the plain faces, its
    # export tuned; with --loss-set mark_data=true on the marked faces too); GAN-fp-data from the marked data alone
    # (Yu et al.'s recipe); GAN-plain never saw the key.
    from facegan.config import parse_override, to_dict
    from facegan.training.loop import load_run_config

    loss_settings = {"path": str(fp_path.resolve())}
    for text in args.loss_set:
        loss_settings.update(parse_override(text))
    resolved_loss = resolve_config("default", {"fingerprint": loss_settings}).fingerprint
    if not resolved_loss.enabled:
        raise SystemExit("error: --loss-set weight=0 turns GAN-fp's loss off; GAN-fp-data is the data alone")
    runs = {"fp": (out / "gan-fp", marked if resolved_loss.mark_data else dataset, loss_settings),
            "fp-data": (out / "gan-fp-data", marked, {}), "plain": (out / "gan-plain", dataset, {})}

    def ensure_gan(run: Path, data, fingerprint_loss: dict, seed: int) -> float | None:
        """Train (or resume, or reuse) one default-preset GAN; its training seconds."""
        summary_path = run / "summary.json"
        if (run / "config.json").is_file():
            saved_config = to_dict(load_run_config(run))  # a run saved by an earlier facegan reads as it resumes
            saved = saved_config.get("fingerprint") or {}
            # All the loss's settings as this run would resolve them now (defaults included), not only those given.
            # (A run without the loss only needs to have had none: its other settings never acted.)
            wanted = to_dict(resolve_config("default", {"fingerprint": fingerprint_loss}).fingerprint) if fingerprint_loss else {"path": ""}
            if {key: saved.get(key, "") for key in wanted} != wanted:
                raise SystemExit(f"error: {run} was trained with other fingerprint-loss settings ({saved}); delete it to redo it")
            if saved_config.get("seed") != seed:
                raise SystemExit(f"error: {run} was trained with seed {saved_config.get('seed')}, not {seed}; delete it to redo it")
        if not summary_path.is_file() or json.loads(summary_path.read_text()).get("kimg", 0) < args.kimg - 1e-9:
            config = resolve_config("default", {"data": str(data.path), "out": str(run), "kimg": args.kimg, "seed": seed,
                                                "fingerprint": fingerprint_loss,
                                                "schedule": {"snapshot_kimg": 1e6, "checkpoint_kimg": 10.0},
                                                "runtime": {"tensorboard": False, "num_threads": args.threads}})
            if train(config, resume=(run / "config.json").is_file(), progress=False).interrupted:
                raise SystemExit(f"error: training {run} was interrupted; run the benchmark again to resume it")
        return json.loads(summary_path.read_text()).get("seconds")

    train_seconds = {name: ensure_gan(run, data, fingerprint_loss, args.seed) for name, (run, data, fingerprint_loss) in runs.items()}

    def ensure_embedded(plain_run: Path) -> Path:
        """`facegan fingerprint embed` (its defaults) on a plain GAN: the key put in after training, by the fine-tune alone."""
        from facegan.cli.main import main as facegan_cli
        from facegan.models.export import export_hash

        target = plain_run.with_name(plain_run.name.replace("gan-plain", "gan-embed"))
        config_path = target / "config.json"
        if config_path.is_file():
            record = json.loads(config_path.read_text())
            embedded = record.get("fingerprint_embed") or {}
            if embedded.get("source_export") == export_hash(plain_run) and (record.get("fingerprint") or {}).get("id") == fingerprint.id:
                return target
            raise SystemExit(f"error: {target} was embedded from another generator or fingerprint; delete it to redo it")
        if facegan_cli(["fingerprint", "embed", str(plain_run), "--fingerprint", str(fp_path), "--out", str(target), "--no-progress"]):
            raise SystemExit(f"error: `facegan fingerprint embed` on {plain_run} failed")
        return target

    embed_started = time.time()
    runs_embed = {args.seed: ensure_embedded(runs["plain"][0])}
    train_seconds["embed"] = round(time.time() - embed_started, 1)
    generated = {name: load_generator(run).sample(range(args.num)) for name, (run, _, _) in runs.items()}
    generated["embed"] = load_generator(runs_embed[args.seed]).sample(range(args.num))

    # ---- 3. robustness table
    real = np.array(dataset.images)
    holdout_count = fingerprint.metadata["dataset"]["num_holdout"]
    order = np.random.default_rng(fingerprint.metadata["seed"]).permutation(len(real))  # train_fingerprint's split
    holdout = real[np.sort(order[:holdout_count])] if holdout_count else real
    sets = {
        "GAN-fp": generated["fp"],
        "GAN-fp-data": generated["fp-data"],
        "GAN-embed": generated["embed"],
        "real-enc-holdout": fingerprint.encode(holdout),
        "real-enc-all": fingerprint.encode(real),
        "real-never": real,
        "GAN-plain": generated["plain"],
    }
    table: dict[str, dict[str, dict[str, float]]] = {}
    for transform in EVAL_TRANSFORMS:
        table[transform] = {}
        for name, images in sets.items():
            result = detect(apply_transform(images, transform), fingerprint, fpr=args.fpr)
            table[transform][name] = {"bit_accuracy": result.mean_bit_accuracy, "detection_rate": result.detection_rate}
    threshold = detect(real[:1], fingerprint, fpr=args.fpr)
    print(f"\nfingerprint {fingerprint.id[:16]}: {fingerprint.bits} bits; detected when >= {threshold.threshold} bits match "
          f"(exact FPR {threshold.exact_fpr:.4f} <= {args.fpr:g}); GANs: default preset, {args.kimg:g} kimg, seed {args.seed}")
    fp_how = "marked data, export tuned" if resolved_loss.mark_data else "plain data, export tuned"
    if resolved_loss.mode != "tune":
        fp_how = f"{'marked' if resolved_loss.mark_data else 'plain'} data, {resolved_loss.mode} loss"
    print(f"images: GAN-fp {args.num} generated (`train --fingerprint`: {fp_how}) | GAN-fp-data {args.num} (marked data alone) | "
          f"GAN-embed {args.num} (`fingerprint embed` on GAN-plain) | real-enc-holdout {len(holdout)} encoded real faces the codec never trained on | "
          f"real-enc-all {len(real)} | FPR columns: real-never {len(real)} never-encoded real faces, GAN-plain {args.num} generated")
    header = f"{'transform':<11}" + "".join(f"{name + ' acc':>22}{'det':>7}" for name in ("GAN-fp", "GAN-fp-data", "GAN-embed", "real-enc-holdout", "real-enc-all")) \
        + f"{'real-never acc':>22}{'FPR':>7}{'GAN-plain acc':>22}{'FPR':>7}"
    print(header)
    for transform, row in table.items():
        cells = "".join(f"{row[name]['bit_accuracy']:22.3f}{row[name]['detection_rate']:7.3f}" for name in ("GAN-fp", "GAN-fp-data", "GAN-embed", "real-enc-holdout", "real-enc-all"))
        cells += f"{row['real-never']['bit_accuracy']:22.3f}{row['real-never']['detection_rate']:7.3f}"
        cells += f"{row['GAN-plain']['bit_accuracy']:22.3f}{row['GAN-plain']['detection_rate']:7.3f}"
        print(f"{transform:<11}{cells}")
    encoded = fingerprint.encode(real)
    psnr = 10 * np.log10(255.0**2 / np.mean((encoded.astype(np.float64) - real) ** 2))
    print(f"PSNR encoded vs original real faces: {psnr:.2f} dB")

    # ---- 4. FD cost
    def fd_of(run: Path) -> float:
        return evaluate(run, dataset.path, num=args.num, features="face", metrics=("fd",), seed=10_000, progress=False).metrics["fd"]

    fd = {name: fd_of(run) for name, (run, _, _) in runs.items()}
    fd["embed"] = fd_of(runs_embed[args.seed])
    print(f"FD (face features, {args.num} generated vs {len(real)} plain real faces), seed {args.seed}: fingerprinted {fd['fp']:.4f} "
          f"(data alone {fd['fp-data']:.4f}, embedded {fd['embed']:.4f}), plain {fd['plain']:.4f}")
    print(f"data alone: FD_fp-data / FD_plain = {fd['fp-data'] / fd['plain']:.3f}")
    # One training seed's FD moves by about 10 % on these 100 faces: the cost is the mean over --fd-seeds.
    fd_by_seed = {args.seed: (fd["fp"], fd["plain"])}
    embed_by_seed = {args.seed: fd["embed"]}
    for seed in args.fd_seeds:
        if seed == args.seed:
            continue
        pair = []
        for name in ("fp", "plain"):
            run, data, fingerprint_loss = runs[name]
            run = run.with_name(f"{run.name}-seed{seed}")
            train_seconds[f"{name}-seed{seed}"] = ensure_gan(run, data, fingerprint_loss, seed)
            pair.append(fd_of(run))
            if name == "plain":
                embed_by_seed[seed] = fd_of(ensure_embedded(run))
        fd_by_seed[seed] = tuple(pair)
    for seed, (fp_fd, plain_fd) in fd_by_seed.items():
        print(f"  seed {seed}: FD fingerprinted {fp_fd:.4f}, embedded {embed_by_seed[seed]:.4f}, plain {plain_fd:.4f}, "
              f"ratios {fp_fd / plain_fd:.3f}, {embed_by_seed[seed] / plain_fd:.3f}")
    plain_mean = np.mean([plain_fd for _, plain_fd in fd_by_seed.values()])
    embed_ratio = float(np.mean(list(embed_by_seed.values())) / plain_mean)
    ratio = float(np.mean([fp_fd for fp_fd, _ in fd_by_seed.values()]) / plain_mean)
    print(f"embedded: FD_embed / FD_plain = {embed_ratio:.3f}  (`fingerprint embed` on each plain GAN, the mean over the same seeds)")
    print(f"ratio = {ratio:.3f}  (mean FD_fp / mean FD_plain over {len(fd_by_seed)} training seed(s); 1 = no quality cost)")
    further = further_training(runs["fp"][0], out / "gan-fp-further", args, fingerprint) if args.further_kimg else {}
    print(f"total {time.time() - started:.0f} s (GAN training {train_seconds})")
    results = {"fingerprint": {"id": fingerprint.id, "bits": fingerprint.bits, "measured": fingerprint.metadata.get("measured")},
               "threshold": threshold.threshold, "exact_fpr": threshold.exact_fpr, "kimg": args.kimg, "num": args.num,
               "table": table, "psnr": psnr, "fd": fd, "fd_by_seed": {str(seed): list(pair) for seed, pair in fd_by_seed.items()},
               "embed_fd_by_seed": {str(seed): value for seed, value in embed_by_seed.items()}, "embed_ratio": embed_ratio,
               "ratio": ratio, "train_seconds": train_seconds, "further_training": further}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def further_training(source: Path, target: Path, args, fingerprint) -> dict[str, dict[str, float]]:
    """5. GAN-fp's tuned export put back into its checkpoint (G and G_ema), the fingerprint turned off, trained on for
    each of --further-kimg more kimg on the same plain faces at its learning rate: the key's bits after each."""
    import shutil

    from safetensors.torch import load_file

    from facegan import train
    from facegan.fingerprint import detect
    from facegan.models.export import load_generator
    from facegan.run import EXPORT_WEIGHTS_NAME, Run
    from facegan.training.checkpoint import load_state, save_state
    from facegan.training.loop import load_run_config

    start_kimg = json.loads((source / "summary.json").read_text())["kimg"]
    if target.exists() and not (target / "config.json").is_file():
        raise SystemExit(f"error: {target} is not a run this benchmark made; move it away to measure further training")
    if not target.exists():
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(source, partial)
        run = Run(partial)
        tuned = load_file(run.export_dir / EXPORT_WEIGHTS_NAME)
        state = load_state(run.state_path)
        for key in ("G", "G_ema"):
            if set(state[key]) != set(tuned):
                raise SystemExit(f"error: {source}'s export and checkpoint hold different generators")
            state[key] = {name: tuned[name].clone() for name in state[key]}
        save_state(run.state_path, state)
        record = json.loads(run.config_path.read_text())
        record["fingerprint"]["path"] = ""  # the loss off: the further training never sees the key
        run.config_path.write_text(json.dumps(record, indent=2))
        partial.rename(target)

    def read(run: Path) -> dict[str, float]:
        result = detect(load_generator(run).sample(range(args.num)), fingerprint, fpr=args.fpr)
        return {"bit_accuracy": result.mean_bit_accuracy, "detection_rate": result.detection_rate}

    readings_path = target / "further.json"  # the readings so far, by kimg trained on (a later run reuses them)
    readings = json.loads(readings_path.read_text()) if readings_path.is_file() else {}
    results = {"0": read(source)}
    print(f"\nfurther training of GAN-fp from its tuned export, fingerprint off, same plain faces and learning rate "
          f"({args.num} faces each):\n  +0 kimg: bit accuracy {results['0']['bit_accuracy']:.3f}, detected "
          f"{results['0']['detection_rate']:.1%}")
    for extra in args.further_kimg:
        config = load_run_config(target)
        config.out, config.kimg, config.runtime.num_threads = str(target), start_kimg + extra, args.threads
        trained = json.loads((target / "summary.json").read_text()).get("kimg", 0)
        if f"{extra:g}" in readings:
            results[f"{extra:g}"] = readings[f"{extra:g}"]
        elif trained > config.kimg + 1e-9:
            raise SystemExit(f"error: {target} has trained past +{extra:g} kimg without reading it there; delete it to redo it")
        else:
            if trained < config.kimg - 1e-9 and train(config, resume=True, progress=False).interrupted:
                raise SystemExit(f"error: training {target} was interrupted; run the benchmark again to resume it")
            results[f"{extra:g}"] = readings[f"{extra:g}"] = read(target)
            readings_path.write_text(json.dumps(readings, indent=2))
        print(f"  +{extra:g} kimg: bit accuracy {results[f'{extra:g}']['bit_accuracy']:.3f}, detected "
              f"{results[f'{extra:g}']['detection_rate']:.1%}", flush=True)
    return results


if __name__ == "__main__":
    from facegan.errors import FaceganError

    try:
        main()
    except FaceganError as error:  # a bad option (a negative seed, an unknown loss setting): one line, as the CLI does
        raise SystemExit(f"error: {error}") from None
