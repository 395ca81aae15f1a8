"""The report-card section of a federated run (`facegan federated train`): the federation, per-round stats, clients.

Registered on import by `facegan.report.card`; reads only the run folder (`federated.json`, `stats.jsonl`,
`federated/clients.jsonl`), so it needs nothing from `facegan.federated`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from facegan.config import load_json_optional
from facegan.plots import line_plot_png, read_stats
from facegan.report.sections import Figure, ReportSection, Table, register_section
from facegan.run import Run


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fmt(value: Any, spec: str = ".4g") -> str:
    return format(value, spec) if _number(value) else "-"


@register_section("federated", order=25)
def federated_section(run: Path) -> ReportSection | None:
    settings = load_json_optional(Run(run).federated_path)
    if not isinstance(settings, dict):
        return None
    rounds = [row for row in read_stats(Run(run).stats_path) if _number(row.get("round"))]
    clients = settings.get("clients") if isinstance(settings.get("clients"), list) else []
    images = settings.get("client_images") if isinstance(settings.get("client_images"), list) else []
    level = settings.get("dp_level", "none")
    privacy = {"none": "none", "sample": f"DP-SGD in each client's discriminator, target epsilon {settings.get('dp_epsilon')}",
               "client": f"client-level (Flower fixed clipping, clip {settings.get('dp_clip')}, noise multiplier "
                         f"{_fmt(settings.get('dp_noise_multiplier'))}), target epsilon {settings.get('dp_epsilon')}"}.get(level, str(level))
    rows = [
        ["clients", f"{len(clients)} ({', '.join(str(n) for n in images)} images; split {settings.get('partition_by')})"],
        ["rounds", f"{len(rounds)} of {settings.get('rounds')}, {settings.get('local_kimg')} kimg per client per round"],
        ["engine", str(settings.get("engine"))],
        ["secure aggregation", "SecAgg+ (the server saw only the sum)" if settings.get("secure_aggregation") else "off"],
        ["differential privacy", privacy],
        ["faults", f"a round completes with >= {settings.get('min_clients')} replies within {settings.get('round_timeout')} s"],
    ]
    readings = [f"Federated training over {len(clients)} clients: {len(rounds)} rounds completed of {settings.get('rounds')}."]
    failed = sum(int(row.get("failures", 0)) for row in rounds if _number(row.get("failures")))
    if failed:
        readings.append(f"{failed} client replies were missing or failed over the run; those rounds aggregated the others.")
    last = rounds[-1] if rounds else {}
    if _number(last.get("epsilon_max")):
        readings.append(f"The most exposed client spent epsilon {last['epsilon_max']:.3g} (sample-level DP).")
    if _number(last.get("epsilon")):
        readings.append(f"Client-level privacy spent: epsilon {last['epsilon']:.3g} (Flower's RDP accountant).")
    tables = [Table("Federation", ["setting", "value"], rows)]
    if rounds:
        keys = [key for key in ("round", "clients", "failures", "kimg", "round_s", "loss_d", "loss_g", "fd", "epsilon", "epsilon_max")
                if any(key in row for row in rounds)]
        tables.append(Table("Rounds", keys, [[_fmt(row.get(key)) for key in keys] for row in rounds],
                            "One line per completed round (client losses weighted by images)."))
    figures = []
    fd = [(row["round"], row["fd"]) for row in rounds if _number(row.get("fd"))]
    if len(fd) >= 2:
        figures.append(Figure("FD of the global generator", line_plot_png(fd, "round", "FD", "Global generator quality"),
                              "Fréchet distance of the global model after each measured round; lower is better."))
    per_client = _client_table(Run(run).client_stats_path)
    if per_client is not None:
        tables.append(per_client)
    return ReportSection("Federated training", readings, figures=figures, tables=tables)


def _client_table(path: Path) -> Table | None:
    if not path.is_file():
        return None
    totals: dict[int, dict[str, float]] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if not isinstance(row, dict) or not _number(row.get("partition-id")):
            continue
        entry = totals.setdefault(int(row["partition-id"]), {"rounds": 0, "images": 0.0, "seconds": 0.0})
        entry["rounds"] += 1
        entry["images"] += float(row.get("num-examples", 0) or 0)
        entry["seconds"] += float(row.get("seconds", 0) or 0)
        if _number(row.get("epsilon")):
            entry["epsilon"] = max(entry.get("epsilon", 0.0), float(row["epsilon"]))
    if not totals:
        return None
    rows = [[client, entry["rounds"], int(entry["images"]), f"{entry['seconds']:.1f}", _fmt(entry.get("epsilon"))]
            for client, entry in sorted(totals.items())]
    return Table("Clients", ["client", "rounds taken part", "images trained", "seconds", "epsilon"], rows,
                 "Per client over the run (a client missing from rounds was down or too slow).")
