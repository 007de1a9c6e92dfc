"""The wheel `pip install .` builds (the Dockerfile's path) holds everything coterm reads at run
time: built here, installed into a fresh virtualenv, and driven from outside the checkout.

The fresh venv gets the wheel alone (`--no-deps`); the dependencies come from this checkout's
`.venv` on PYTHONPATH, which holds them but not coterm itself (it is installed there editable,
through a .pth hook that PYTHONPATH does not run). So every coterm file must come from the wheel."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import urllib.request
import venv
from pathlib import Path

from processor.dev.broker import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_the_installed_wheel_serves_the_dashboard_docs_and_schemas(tmp_path: Path) -> None:
    # Built from the tracked files alone, as a clean clone or `COPY` would: an `*.egg-info` left in a
    # developer's checkout by an editable install would otherwise add files the package data forgot.
    source = tmp_path / "source"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True).stdout.split(b"\0")
    for name in filter(None, (t.decode() for t in tracked)):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels), str(source)],
                   check=True, capture_output=True, timeout=300)
    [wheel] = wheels.glob("coterm-*.whl")
    env_dir = tmp_path / "fresh"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    target = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                            check=True, capture_output=True, text=True).stdout.strip()
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", target, str(wheel)],
                   check=True, capture_output=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"], "COTERM_STORE": str(tmp_path / "s.sqlite")}
    run = {"env": env, "cwd": tmp_path, "capture_output": True, "text": True, "timeout": 120}

    where = subprocess.run([str(python), "-c", "import projections, contracts; print(projections.__file__)"], **run)
    assert where.stdout.startswith(target), where.stdout + where.stderr  # coterm comes from the wheel
    version = subprocess.run([str(python), "-m", "processor.cli.coterm", "--version"], **run)
    assert version.returncode == 0 and version.stdout.startswith("coterm ")
    schemas = subprocess.run([str(python), "-c", "from contracts.schemas import SCHEMA_DIR; "
                              "print(len(list(SCHEMA_DIR.glob('*.json'))))"], **run)
    assert schemas.returncode == 0 and int(schemas.stdout) >= 20, schemas.stderr

    port = free_port()
    server = subprocess.Popen([str(python), "-m", "processor.cli.coterm", "serve", "--port", str(port),
                               "--create-store"], env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, server.stderr.read().decode() if server.stderr else ""
                time.sleep(0.3)
        for path, expect in (("/", b'id="login"'), ("/static/docs/swagger-ui-bundle.js", b"SwaggerUI"),
                             ("/docs", b"swagger-ui-bundle.js"), ("/openapi.json", b'"openapi"')):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
                assert response.status == 200 and expect in response.read(), path
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/stats", timeout=10) as response:
            assert json.loads(response.read())["operations"]["total"] == 0
    finally:
        server.terminate()
        server.wait(30)
