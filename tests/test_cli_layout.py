"""The command line's shape: `--help` loads no torch, and every command reports errors the same way."""
import os
import subprocess
import sys

import pytest

from r1lab.cli.errors import error_message, is_user_error

# Exactly what the console script does, then which heavy modules got imported.
PROBE = ("import sys\nfrom r1lab.cli import app\nsys.argv = ['r1lab', *sys.argv[1:]]\n"
         "try:\n    app()\nexcept SystemExit:\n    pass\n"
         "print('HEAVY', sorted(m for m in ('torch', 'transformers', 'numpy') if m in sys.modules))\n")


@pytest.mark.parametrize("args", [["--help"], ["zero", "--help"], ["eval", "--help"], ["serve", "--help"]])
def test_help_does_not_import_torch(args):
    out = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=os.environ,
                         timeout=300)
    assert "Usage" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "HEAVY []"


def test_one_error_line_for_every_user_error_kind():
    assert is_user_error(ValueError("x")) and is_user_error(PermissionError(13, "Permission denied", "/ro/run"))
    assert not is_user_error(RuntimeError("a bug"))
    assert error_message(KeyError("rewards.x: unknown reward")) == "rewards.x: unknown reward"
    assert error_message(OSError(28, "No space left on device", "/full/run")) == "/full/run: No space left on device"
    assert error_message(ValueError("first line\n  second line")) == "first line second line"


def test_stage_and_teacher_errors_count_once_their_module_is_loaded():
    from r1lab.pipeline.steps import StageError
    from r1lab.pipeline.teachers import TeacherError

    assert is_user_error(StageError("rejection kept nothing")) and is_user_error(TeacherError("endpoint down"))
