"""The main job end to end at tiny lengths: every promised file, the DP guarantee, and reuse on a second run."""
import json

from facegan.demo import run_demo


def test_demo_writes_everything_and_reuses_it(tmp_path, capsys):
    out, data = tmp_path / "runs", tmp_path / "data" / "faces16"
    run_demo(str(out), str(data), size=16, kimg=0.064, dp_kimg=0.064, num_eval=32, progress=False)
    for name in ("grid.png", "grid-dp.png", "interpolation.png", "reals.png", "summary.txt",
                 "default/report.html", "dp/report.html", "default/metrics.json", "dp/audit.json", "default/loss_curves.png"):
        assert (out / name).is_file(), name
    dp = json.loads((out / "dp" / "export" / "config.json").read_text())["dp"]
    assert 0 < dp["epsilon"] <= 10.0 + 1e-6
    summary = (out / "summary.txt").read_text()
    assert "(10.00," in summary or f"({dp['epsilon']:.2f}," in summary
    assert "Differential privacy" in (out / "dp" / "report.html").read_text()
    first = capsys.readouterr().out

    mtimes = {name: (out / name).stat().st_mtime for name in ("default/metrics.json", "dp/audit.json", "default/export/model.safetensors")}
    run_demo(str(out), str(data), size=16, kimg=0.064, dp_kimg=0.064, num_eval=32, progress=False)
    assert "reusing finished run" in capsys.readouterr().out and "reusing" not in first
    assert all((out / name).stat().st_mtime == mtime for name, mtime in mtimes.items())  # nothing measured or trained twice

    (out / "default" / "metrics.json").write_text("{garbage")  # a broken result is measured again, not a traceback
    run_demo(str(out), str(data), size=16, kimg=0.064, dp_kimg=0.064, num_eval=32, progress=False)
    assert json.loads((out / "default" / "metrics.json").read_text())["metrics"]["fd"] >= 0
