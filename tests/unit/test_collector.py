"""The collector's settings for coterm's long-running processes (`processor.collector`)."""

import json
import subprocess
import sys

from processor import collector


def test_tune_freezes_what_start_up_built_and_collects_the_young_less_often() -> None:
    # In a fresh interpreter: frozen objects are never collected, so a test worker must not freeze.
    probe = ("import gc, json; from processor import collector; before = gc.get_threshold(); collector.tune(); "
             "print(json.dumps([before, gc.get_threshold(), gc.get_freeze_count()]))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    before, after, frozen = json.loads(done.stdout)
    assert before[0] == 700 and after == [collector.YOUNG_EVERY, before[1], before[2]]
    assert frozen > 1000  # the interpreter's own modules and objects at least
