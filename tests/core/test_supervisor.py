import subprocess
import sys
import time

import pytest

from core.supervisor import CrashLoop, ProcessSpec, Supervisor

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def test_restarts_a_child_that_dies_and_stops_all_children():
    supervisor = Supervisor(specs=[ProcessSpec("a", SLEEPER), ProcessSpec("b", SLEEPER)], log=lambda _: None)
    supervisor.start()
    try:
        first = supervisor.children["a"].process
        first.kill()
        first.wait()
        assert supervisor.poll() == ["a"]
        assert supervisor.children["a"].process.pid != first.pid
        assert supervisor.children["a"].process.poll() is None
        assert supervisor.poll() == []
    finally:
        processes = [child.process for child in supervisor.children.values()]
        supervisor.stop()
    assert all(process.poll() is not None for process in processes)


def test_a_child_that_keeps_dying_at_start_is_a_crash_loop():
    supervisor = Supervisor(
        specs=[ProcessSpec("bad", [sys.executable, "-c", "raise SystemExit(3)"])], log=lambda _: None, max_fast_failures=3
    )
    supervisor.start()

    def until_it_gives_up() -> None:
        for _ in range(10):
            supervisor.children["bad"].process.wait()
            supervisor.poll()

    with pytest.raises(CrashLoop, match="bad exited 3 times"):
        until_it_gives_up()
    supervisor.stop()


def test_children_die_with_the_supervisor():
    code = (
        "import sys, time; sys.path.insert(0, '.');"
        "from core.supervisor import Supervisor, ProcessSpec;"
        f"s = Supervisor(specs=[ProcessSpec('c', {SLEEPER!r})], log=lambda _: None); s.start();"
        "print(s.children['c'].process.pid, flush=True); time.sleep(60)"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{child_pid}/stat") as stat:
                if stat.read().split()[2] == "Z":
                    break  # exited, awaiting reaping by init
        except FileNotFoundError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("child outlived its supervisor")
