"""
Run the test suite with trial and finish with one summary line,
C{tests: N passed, N failed, N skipped}: C{python -m tests [trial args]}.
"""

import re
import subprocess
import sys


def main(argv):
    arguments = argv or ["tests"]
    process = subprocess.Popen(
        [sys.executable, "-m", "twisted.trial", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    ran = None
    outcome = ""
    for line in process.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        match = re.match(r"Ran (\d+) tests?", line)
        if match:
            ran = int(match.group(1))
        if line.startswith(("PASSED", "FAILED")):
            outcome = line
    code = process.wait()
    counts = dict(
        (name, int(value)) for name, value in re.findall(r"(\w+)=(\d+)", outcome)
    )
    failed = counts.get("failures", 0) + counts.get("errors", 0) + counts.get(
        "unexpectedSuccesses", 0
    )
    skipped = counts.get("skips", 0) + counts.get("expectedFailures", 0)
    passed = counts.get("successes", 0)
    if ran is None:
        failed = max(failed, 1)
    print(f"tests: {passed} passed, {failed} failed, {skipped} skipped")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
