"""Packaging promises: importing has no side effects and needs no optional extra."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

WITHOUT_LLAMA = """
import sys
sys.modules["llama_cpp"] = None  # as if the embedded extra were not installed
from pathlib import Path
import ai_stack, ai_stack.cli, ai_stack.controller, ai_stack.session
from ai_stack.backends.base import LoadOptions
from ai_stack.backends.embedded import EmbeddedBackend
from ai_stack.errors import BackendUnavailableError
backend = EmbeddedBackend(models_dir=Path("unused"))
assert not backend.health().available, backend.health()
try:
    backend.load(sys.argv[1], LoadOptions())
except BackendUnavailableError as exc:
    print("unavailable:", exc.hint)
"""


def test_import_works_without_the_embedded_extra(tmp_path: Path) -> None:
    """Runs everywhere, the model fixture not needed: a file with a GGUF header is enough to get
    as far as importing llama_cpp, which then fails as it would without the extra."""
    model = tmp_path / "tiny.gguf"
    model.write_bytes(b"GGUF" + bytes(60))
    env = {**os.environ, "AI_STACK_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_LLAMA, str(model)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "unavailable: Install the embedded extra" in done.stdout


def test_import_and_help_touch_no_user_data(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "AI_STACK_HOME": str(home)}
    for args in (["-c", "import ai_stack, ai_stack.cli"], [str(ROOT / "main.py"), "--help"]):
        done = subprocess.run([sys.executable, *args], capture_output=True, env=env, check=False)
        assert done.returncode == 0
    assert not home.exists()
