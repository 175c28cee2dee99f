#!/usr/bin/env python3
"""Runs librdkafka's test suite (tests/test-runner) against a running broker and prints a
table of every test with PASS, FAIL or SKIP. Called by ci/librdkafka-suite, which builds
the runner, starts `runnel server` and writes test.conf; see there for the why.

Each test number runs in its own test-runner process (TESTS=NNNN, -p1), several at a time:
the runner ends the whole process when one test times out (it SIGKILLs the test's thread,
which kills the process) or fails outside a test thread (assert), so one process for the
suite would lose every result after the first such test. One process per test also gives
each test its own log, which is what the findings are diagnosed from.

Standard library only: it runs before any virtualenv exists.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;]*m")
# A line of the runner's summary: "| 0001_multiobj    |     PASSED |   1.234s | reason"
SUMMARY = re.compile(r"^\|\s*(\d{4}\w*)\s*\|\s*(PASSED|FAILED|SKIPPED|RUNNING|DNS)\s*\|\s*([\d.]+)s\s*\|\s?(.*)$")
# An entry of tests[] in tests/test.c: _TEST(0011_produce_batch, FLAGS, ..., .scenario = "x")
TEST_DECL = re.compile(r"_TEST\(\s*(\d{4}\w*)\s*,\s*([^,)]*)(.*?)(?=_TEST\(|$)", re.S)
SCENARIO = re.compile(r'\.scenario\s*=\s*"([^"]*)"')
STATE = {"PASSED": "PASS", "FAILED": "FAIL", "RUNNING": "FAIL", "SKIPPED": "SKIP", "DNS": "SKIP"}
# The tests that took longest (a minute or more) in a full run start first, so that the run
# is not left waiting for one of them at the end.
SLOW_FIRST = ["0113", "0150", "0061", "0129", "0089", "0139", "0137", "0076", "0033", "0091", "0026",
              "0094", "0102", "0055", "0030", "0045"]


@dataclass
class Result:
    name: str
    state: str  # PASS, FAIL or SKIP
    seconds: float
    reason: str = ""


@dataclass
class Declared:
    name: str
    number: str
    flags: str
    scenarios: list[str]
    results: list[Result] = field(default_factory=list)

    @property
    def scenario(self) -> str:
        """The scenario to run the test in: default when it is one of its scenarios."""
        return "default" if "default" in self.scenarios else self.scenarios[0]


def declared_tests(test_c: Path) -> list[Declared]:
    """Every test of the suite, in the order of tests/test.c's tests[] array."""
    text = test_c.read_text(errors="replace")
    start = text.index("struct test tests[] = {")
    end = text.index("};", start)
    tests = []
    for m in TEST_DECL.finditer(text[start:end]):
        name = m.group(1)
        sc = SCENARIO.search(m.group(3))
        tests.append(Declared(name, name[:4], m.group(2).strip(), sc.group(1).split(",") if sc else ["default"]))
    return tests


def parse_log(log: str, names: set[str]) -> dict[str, Result]:
    """The states and reasons of the runner's summary (the last one printed wins)."""
    out: dict[str, Result] = {}
    for raw in log.splitlines():
        line = ANSI.sub("", raw).rstrip()
        m = SUMMARY.match(line)
        if m and m.group(1) in names:
            out[m.group(1)] = Result(m.group(1), STATE[m.group(2)], float(m.group(3)), m.group(4).strip())
    return out


def first_failure(log: str) -> str:
    """The first '### Test ... failed at FILE:LINE ... ###' message and the line after it."""
    lines = [ANSI.sub("", s) for s in log.splitlines()]
    for i, line in enumerate(lines):
        if line.startswith("### Test ") and " failed at " in line:
            where = line.split(" failed at ", 1)[1].split(" at ", 1)[0]
            nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
            return f"{nxt} ({where})"
    return ""


def read_list(path: str) -> dict[str, list[str]]:
    """A test list (the allowlist): a test name a line, then test-runner options for it
    (only -Q: quick mode, for tests whose full run is too long for CI); # starts a comment."""
    wanted: dict[str, list[str]] = {}
    for line in Path(path).read_text().splitlines():
        words = line.split("#", 1)[0].split()
        if words:
            bad = [w for w in words[1:] if w != "-Q"]
            if bad:
                raise SystemExit(f"librdkafka-suite: {path}: {words[0]}: unknown option(s) {bad} (only -Q)")
            wanted[words[0]] = words[1:]
    return wanted


def run_number(number: str, tests: list[Declared], extra: list[str], args, env: dict[str, str]) -> list[Result]:
    cmd = [str(Path(args.home) / "tests" / "test-runner"), "-p1", *args.runner_args, *extra]
    env = dict(env, TESTS=number)
    # A test of another scenario (e.g. noautocreate: a broker that does not create topics on
    # demand) runs against the broker the caller started for that scenario.
    scenario = tests[0].scenario
    log_path = Path(args.work) / "logs" / (f"{number}.log" if scenario == "default" else f"{number}-{scenario}.log")
    if scenario != "default":
        cmd += ["-s", scenario]
        env["RDKAFKA_TEST_CONF"] = args.scenario_conf[scenario]
        # (bin/kafka-topics.sh --bootstrap-server $BROKERS must reach the same broker)
        for line in Path(args.scenario_conf[scenario]).read_text().splitlines():
            if line.startswith("bootstrap.servers="):
                env["BROKERS"] = line.split("=", 1)[1].strip()
    start = time.monotonic()
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(cmd, cwd=Path(args.home) / "tests", env=env, stdout=log_file,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=args.hard_timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
    elapsed = time.monotonic() - start
    log = log_path.read_text(errors="replace")
    names = {t.name for t in tests}
    found = parse_log(log, names)
    results = []
    for t in tests:
        r = found.get(t.name)
        if code is None:
            reason = f"killed after {args.hard_timeout}s (the suite's hard limit)"
            results.append(Result(t.name, "FAIL", elapsed, reason))
        elif r is None and "TEST_F_LOCAL" in t.flags and "-L" in args.runner_args:
            # (another test of its number ended the process; -L would have skipped it)
            results.append(Result(t.name, "SKIP", 0.0, "broker-less (local) test, not run (-L)"))
        elif r is None:
            why = f"signal {-code}" if code < 0 else f"exit code {code}"
            fail = first_failure(log)
            results.append(Result(t.name, "FAIL", elapsed, f"runner died ({why}) before its summary{': ' + fail if fail else ''}"))
        else:
            if r.state == "FAIL" and not r.reason:
                timed_out = next((ANSI.sub("", s).strip() for s in log.splitlines() if "timed out (timeout set to" in s), "")
                r.reason = timed_out or first_failure(log) or f"runner exit code {code}"
            if r.state == "SKIP" and r.reason.startswith("Filtered due to negative test flags"):
                if "TEST_F_LOCAL" in t.flags:
                    r.reason = "broker-less (local) test, not run (-L)"
                elif "TEST_F_KNOWN_ISSUE" in t.flags:
                    r.reason = "librdkafka marks it a known issue of its own; the runner skips those"
            if extra and not r.reason:
                r.reason = f"run with {' '.join(extra)}"
            if r.state == "FAIL" and code < 0:
                r.reason += f" [runner died: signal {-code}]"
            results.append(r)
    return results


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--home", required=True, help="the librdkafka build (with tests/test-runner)")
    p.add_argument("--work", required=True, help="where logs/ and results.tsv go")
    p.add_argument("--select", default="all", help="'all', or a file with one test name a line (see read_list)")
    p.add_argument("--options-from", help="a test list whose per-test options apply with --select all too")
    p.add_argument("--parallel", type=int, default=4, help="test-runner processes at a time")
    p.add_argument("--hard-timeout", type=int, default=900, help="seconds before a runner process is killed")
    p.add_argument("--scenario-conf", action="append", default=[], metavar="SCENARIO=TEST_CONF",
                   help="the test.conf of the broker for the tests of another scenario")
    p.add_argument("runner_args", nargs="*", help="extra test-runner options (after --)")
    args = p.parse_args()
    args.scenario_conf = dict(s.split("=", 1) for s in args.scenario_conf)

    tests = declared_tests(Path(args.home) / "tests" / "test.c")
    wanted: set[str] | None = None
    options: dict[str, list[str]] = read_list(args.options_from) if args.options_from else {}
    if args.select != "all":
        listed = read_list(args.select)
        options.update(listed)
        wanted = set(listed)
        unknown = wanted - {t.name for t in tests}
        if unknown:
            print(f"librdkafka-suite: {args.select} names tests the suite does not have: {sorted(unknown)}", file=sys.stderr)
            return 2

    # One runner process per test number and scenario (0045 has tests of both kinds).
    by_number: dict[tuple[str, str], list[Declared]] = {}
    for t in tests:
        by_number.setdefault((t.number, t.scenario), []).append(t)

    (Path(args.work) / "logs").mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "CI"}  # CI=1 would change the runner's timeouts
    env["LD_LIBRARY_PATH"] = f"{args.home}/src:{args.home}/src-cpp"

    results: dict[str, Result] = {}
    jobs = []
    for (number, _), group in by_number.items():
        if "TEST_F_MANUAL" in group[0].flags:
            for t in group:
                results[t.name] = Result(t.name, "SKIP", 0.0, "manual test (not part of the automatic suite)")
            continue
        if wanted is not None and not any(t.name in wanted for t in group):
            continue
        if group[0].scenario != "default" and group[0].scenario not in args.scenario_conf:
            for t in group:
                results[t.name] = Result(t.name, "SKIP", 0.0, f"needs test scenario {group[0].scenario} (no broker for it)")
            continue
        extra = sorted({o for t in group for o in options.get(t.name, [])})
        jobs.append((number, group, extra))
    jobs.sort(key=lambda job: SLOW_FIRST.index(job[0]) if job[0] in SLOW_FIRST else len(SLOW_FIRST))

    start = time.monotonic()
    done = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.parallel) as pool:
        futures = {pool.submit(run_number, n, g, extra, args, env): n for n, g, extra in jobs}
        for fut in concurrent.futures.as_completed(futures):
            done += 1
            for r in fut.result():
                results[r.name] = r
                if wanted is None or r.name in wanted:
                    mark = {"PASS": "ok  ", "FAIL": "FAIL", "SKIP": "skip"}[r.state]
                    print(f"[{done:3d}/{len(jobs)} {time.monotonic() - start:6.0f}s] {mark} {r.name} ({r.seconds:.1f}s)"
                          + (f": {r.reason[:150]}" if r.state == "FAIL" else ""), flush=True)

    shown = [t for t in tests if t.name in results and (wanted is None or t.name in wanted)]
    width = max(len(t.name) for t in shown) if shown else 10
    print()
    print(f"{'test':<{width}}  result  seconds  reason")
    for t in shown:
        r = results[t.name]
        print(f"{r.name:<{width}}  {r.state:<6}  {r.seconds:7.1f}  {r.reason[:160]}")
    counts = {s: sum(1 for t in shown if results[t.name].state == s) for s in ("PASS", "FAIL", "SKIP")}
    print()
    print(f"librdkafka-suite: {counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped, "
          f"of {len(shown)} tests, in {time.monotonic() - start:.0f}s (logs: {args.work}/logs/NNNN.log)")

    with open(Path(args.work) / "results.tsv", "w") as f:
        for t in shown:
            r = results[t.name]
            f.write(f"{r.name}\t{r.state}\t{r.seconds:.1f}\t{r.reason}\n")

    if wanted is not None:
        bad = [n for n in sorted(wanted) if results.get(n) is None or results[n].state != "PASS"]
        if bad:
            print(f"librdkafka-suite: allowlisted tests that did not pass: {' '.join(bad)}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
