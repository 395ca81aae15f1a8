"""The rules `facegan serve` keeps without a browser: roots, host and password, uploads (no gradio server started)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from facegan.errors import FaceganError
from facegan.web.paths import Roots


@pytest.fixture
def roots(tmp_path):
    (tmp_path / "runs" / "a").mkdir(parents=True)
    (tmp_path / "data" / "faces").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "keys.txt").write_text("no")
    return Roots.create(tmp_path / "runs", tmp_path / "data")


@pytest.mark.parametrize("name", ["../secret", "a/../../secret", "/etc", "/etc/passwd", "~/x", "a/\x00b", "", "  ", None, "..", "a/.."])
def test_names_outside_the_roots_are_refused_before_any_file_is_opened(roots, name):
    with pytest.raises(FaceganError):
        roots.resolve("runs", name)


def test_an_absolute_path_into_the_root_is_refused_too(roots):
    with pytest.raises(FaceganError, match="absolute paths are not accepted"):
        roots.resolve("runs", str(roots.runs / "a"))


def test_a_link_out_of_the_root_is_refused_and_not_listed(roots):
    os.symlink(roots.runs.parent / "secret", roots.runs / "escape")
    with pytest.raises(FaceganError, match="leads outside"):
        roots.resolve("runs", "escape/keys.txt")
    assert roots.folders("runs", lambda path: True) == ["a"]


def test_names_inside_the_roots_resolve(roots):
    assert roots.resolve("runs", "a") == roots.runs / "a"
    assert roots.resolve("data", "faces") == roots.data / "faces"
    assert roots.resolve("runs", "new/run", must_exist=False) == roots.runs / "new" / "run"
    with pytest.raises(FaceganError, match="no run 'b'"):
        roots.resolve("runs", "b")


def test_a_reachable_host_needs_a_password():
    from facegan.web.server import ServeSettings, check_settings

    assert check_settings(ServeSettings()) is None
    assert check_settings(ServeSettings(host="::1")) is None
    with pytest.raises(FaceganError, match="give a login too"):
        check_settings(ServeSettings(host="0.0.0.0"))
    with pytest.raises(FaceganError, match="must be USER:PASS"):
        check_settings(ServeSettings(host="0.0.0.0", auth="alice"))
    assert check_settings(ServeSettings(host="0.0.0.0", auth="alice:pass")) == ("alice", "pass")
    with pytest.raises(FaceganError, match="--port"):
        check_settings(ServeSettings(port=70000))


def test_serve_on_a_public_address_without_auth_exits_with_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "facegan", "serve", "--runs", str(tmp_path), "--host", "0.0.0.0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "--auth-file FILE" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_login_comes_from_auth_auth_file_or_the_environment_never_echoed(tmp_path, capsys):
    from facegan.cli.serve import resolve_auth

    assert resolve_auth(None, None, {}) is None
    assert resolve_auth(None, None, {"FACEGAN_SERVE_AUTH": "bob:env-pass"}) == "bob:env-pass"
    assert resolve_auth("alice:argv-pass", None, {"FACEGAN_SERVE_AUTH": "bob:env-pass"}) == "alice:argv-pass"
    assert "can be read by other users" in capsys.readouterr().err
    login = tmp_path / "login"
    login.write_text("carol:file pass:with colon\nignored second line\n")
    assert resolve_auth(None, str(login), {"FACEGAN_SERVE_AUTH": "bob:env-pass"}) == "carol:file pass:with colon"
    assert capsys.readouterr().err == ""
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "binary").write_bytes(b"\xff\xfe:")
    (tmp_path / "huge").write_bytes(b"a:b" + b"x" * 10_000)
    for name, message in (("fifo", "FIFO"), ("empty", "is empty"), ("binary", "not UTF-8"), ("huge", "limit"),
                          ("missing", "cannot read")):
        with pytest.raises(FaceganError, match=message):
            resolve_auth(None, str(tmp_path / name), {})


def test_serve_refuses_auth_and_auth_file_together_and_a_bad_file_in_one_line(tmp_path):
    (tmp_path / "login").write_text("no-colon-secret\n")
    for extra, message in ((["--auth", "a:b", "--auth-file", str(tmp_path / "login")], "not allowed with argument"),
                           (["--host", "0.0.0.0", "--auth-file", str(tmp_path / "login")], "must be USER:PASS")):
        result = subprocess.run([sys.executable, "-m", "facegan", "serve", "--runs", str(tmp_path), *extra],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
        assert "no-colon-secret" not in result.stderr  # the file's content is never echoed


def test_the_cli_help_does_not_import_gradio():
    code = "import sys; from facegan.cli.main import build_parser; build_parser(); print('gradio' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_uploads_are_refused_for_each_bad_kind_in_one_line(tmp_path):
    from PIL import Image

    from facegan.web.uploads import MAX_UPLOAD_BYTES, prepare_upload, read_upload

    text = tmp_path / "photo.png"
    text.write_text("not an image")
    with pytest.raises(FaceganError, match="photo.png refused: not an image"):
        read_upload(text)
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff\xd8\xff" + b"\0" * MAX_UPLOAD_BYTES)
    with pytest.raises(FaceganError, match="larger than 10 MB"):
        read_upload(big)
    bomb = tmp_path / "bomb.png"
    Image.new("L", (5000, 5000)).save(bomb)  # 25 Mpx in a few KB: over the upload pixel limit
    with pytest.raises(FaceganError, match="larger than 10 MB or 16,000,000 pixels"):
        read_upload(bomb)
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), (128, 128, 128)).save(blank)
    with pytest.raises(FaceganError, match="finds no face"):
        prepare_upload(blank, 32, 1)
    with pytest.raises(FaceganError, match="no photo uploaded"):
        read_upload(None)


def test_a_painted_mask_becomes_holes_where_the_strokes_are():
    from facegan.web.actions import painted_mask

    layer = np.zeros((256, 256, 4), np.uint8)
    layer[0:64, 0:128, 3] = 255  # the top-left quarter-height, left half painted
    mask = painted_mask({"background": None, "layers": [layer], "composite": None}, 16)
    expected = np.zeros((16, 16), bool)
    expected[0:4, 0:8] = True
    np.testing.assert_array_equal(mask, expected)
    with pytest.raises(FaceganError, match="no mask painted"):
        painted_mask({"layers": [np.zeros((256, 256, 4), np.uint8)]}, 16)


@pytest.mark.xdist_group("processes")
def test_with_auth_nothing_but_the_login_page_answers_without_the_password(tmp_path):
    import http.cookiejar
    import time
    import urllib.error
    import urllib.parse
    import urllib.request

    from tests.web.conftest import free_port

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    (tmp_path / "login").write_text("alice:a-pass\n")  # through --auth-file: the password never appears in ps
    server = subprocess.Popen([sys.executable, "-m", "facegan", "serve", "--runs", str(tmp_path), "--port", str(port), "--auth-file", str(tmp_path / "login")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(base + "/", timeout=2)
                break
            except OSError:
                time.sleep(0.3)
        for path in ("/config", "/gradio_api/info"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(base + path, timeout=5)
            assert refused.value.code == 401
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(base + "/login", data=urllib.parse.urlencode({"username": "alice", "password": "wrong"}).encode(), timeout=5)
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        opener.open(base + "/login", data=urllib.parse.urlencode({"username": "alice", "password": "a-pass"}).encode(), timeout=5)
        assert opener.open(base + "/config", timeout=5).status == 200
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_sigterm_stops_the_server_cleanly_and_removes_its_work_folder(tmp_path):
    """kill/systemd/docker stop send SIGTERM: the server closes as on Ctrl-C and leaves no work folder."""
    import urllib.request

    from tests.web.conftest import free_port

    temp = tmp_path / "tmp"
    temp.mkdir()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "facegan", "serve", "--runs", str(tmp_path), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(temp), "GRADIO_TEMP_DIR": str(tmp_path / "gradio")})
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except OSError:
                time.sleep(0.3)
        assert len(list(temp.glob(".facegan-serve.work-*"))) == 1
    finally:
        server.terminate()
        code = server.wait(timeout=30)
    assert code == 0
    assert list(temp.glob(".facegan-serve.work-*")) == []


def test_a_fifo_under_the_roots_does_not_hang_the_listings(tmp_path):
    """A named pipe where a manifest or config should be would block a plain read forever (at app start)."""
    from facegan.web import actions

    (tmp_path / "runs" / "trap" / "export").mkdir(parents=True)
    os.mkfifo(tmp_path / "runs" / "trap" / "manifest.json")
    os.mkfifo(tmp_path / "runs" / "trap" / "config.json")
    os.mkfifo(tmp_path / "runs" / "trap" / "export" / "config.json")
    roots = Roots.create(tmp_path / "runs", tmp_path / "runs")
    assert actions.list_datasets(roots) == [] and actions.list_generators(roots) == []
    actions.run_rows(roots)  # returns (whatever it lists) instead of blocking
