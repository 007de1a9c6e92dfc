"""`make test`: the kill storm (marked `storm`) in a pytest of its own beside four xdist workers
for the rest, both on one broker. The Keycloak tests (marked `keycloak`) run last, alone: its JVM
takes about 15 s of both cores to start on an idle machine, and beside the rest it once took
over three minutes (and slowed the suite's timed tests while it did).

Most of the suite waits (group joins, vendor backoff, browsers), so the two overlap well on two
cores. When the suite runs on Apache Kafka (`tests/backend.py`), the broker is started here once
and handed to both sessions (`COTERM_TEST_KAFKA`), so two JVMs do not share the two cores; the
pytest header still says it is Apache Kafka and how long it took to start. The storm's output
follows the rest's; either failing (or collecting no test: exit 5) fails the run.
"""

import os
import subprocess
import sys
import tempfile

from tests import backend


def main() -> int:
    started = backend.Started()
    env = dict(os.environ)
    if backend.chosen_broker() in ("auto", "kafka"):
        try:
            session = started.start()
        except (SystemExit, RuntimeError) as why:
            print(f"coterm: the test broker did not start: {why}", file=sys.stderr)
            return 1
        if session.bootstrap:  # Apache Kafka, started here: both sessions use it
            env["COTERM_TEST_KAFKA"] = session.bootstrap
            env["COTERM_TEST_KAFKA_DETAIL"] = session.detail
    python = sys.executable
    try:
        with tempfile.TemporaryFile("w+") as storm_log:
            storm = subprocess.Popen([python, "-m", "pytest", "-m", "storm"], env=env, stdout=storm_log,
                                     stderr=subprocess.STDOUT)
            rest = subprocess.call([python, "-m", "pytest", "-n", "4", "--dist", "worksteal", "--durations=10",
                                    "-m", "not storm and not keycloak"], env=env)
            alone = storm.wait()
            storm_log.seek(0)
            print(f"--- the kill storm, run beside the tests above (exit {alone}):", flush=True)
            sys.stdout.write(storm_log.read())
        print("--- the Keycloak tests, after the rest (its JVM's start-up takes both cores):", flush=True)
        keycloak = subprocess.call([python, "-m", "pytest", "-m", "keycloak"], env=env)
    finally:
        started.stop()
    return 0 if rest == 0 and alone == 0 and keycloak == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
