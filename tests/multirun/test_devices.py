"""DeviceLease: exclusive device slots across processes (flock in the sweep directory)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from multiml.app.devices import DeviceLease, lock_scope

HOLDER = """
import json, sys, time
from multiml.app.devices import DeviceLease
lock_dir, devices, out = sys.argv[1], sys.argv[2].split(","), sys.argv[4]
hold_s = float(sys.argv[3])
with DeviceLease(lock_dir, devices, poll_s=0.01) as (slot, device):
    start = time.time()
    with open(out + ".held", "w") as handle:
        handle.write(str(slot))
    time.sleep(hold_s)
    end = time.time()
with open(out, "w") as handle:
    json.dump({"slot": slot, "device": device, "start": start, "end": end}, handle)
"""
"""A process that holds a slot for ``hold_s`` seconds and records when (run with -c)."""


def start_holder(lock_dir: Path, devices: list[str], hold_s: float, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock_dir), ",".join(devices), str(hold_s), str(out)]
    )


def wait_for(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def test_processes_share_two_slots_without_overlap(tmp_path: Path) -> None:
    lock_dir = tmp_path / ".devices"
    outs = [tmp_path / f"holder{i}.json" for i in range(5)]
    procs = [start_holder(lock_dir, ["cpu", "cuda:7"], 0.4, out) for out in outs]
    for proc in procs:
        assert proc.wait(timeout=60) == 0
    records = [json.loads(out.read_text()) for out in outs]
    assert {r["slot"] for r in records} == {0, 1}
    assert all(r["device"] == ["cpu", "cuda:7"][r["slot"]] for r in records)
    for slot in (0, 1):
        intervals = sorted((r["start"], r["end"]) for r in records if r["slot"] == slot)
        for (_, end), (start, _) in itertools.pairwise(intervals):
            assert end <= start, f"slot {slot} held twice at once: {intervals}"
    # never more than two holders at any moment
    events = sorted([(r["start"], 1) for r in records] + [(r["end"], -1) for r in records])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    assert peak <= 2
    # five holders of 0.4 s on two slots need at least three rounds
    assert max(r["end"] for r in records) - min(r["start"] for r in records) >= 1.2


def test_a_killed_holder_frees_its_slot(tmp_path: Path) -> None:
    lock_dir = tmp_path / ".devices"
    holder = start_holder(lock_dir, ["cpu"], 120, tmp_path / "killed.json")
    try:
        wait_for(tmp_path / "killed.json.held")
        with pytest.raises(TimeoutError, match="no free device slot"):
            DeviceLease(lock_dir, ["cpu"], poll_s=0.01, timeout_s=0.2).acquire()
        holder.kill()
        holder.wait(timeout=30)
        with DeviceLease(lock_dir, ["cpu"], poll_s=0.01, timeout_s=10) as (slot, device):
            assert (slot, device) == (0, "cpu")
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert not (tmp_path / "killed.json").exists()  # it never finished


def test_an_exception_in_the_block_releases_the_slot(tmp_path: Path) -> None:
    lease = DeviceLease(tmp_path, ["cpu"])
    with pytest.raises(RuntimeError, match="job failed"), lease:
        raise RuntimeError("job failed")
    assert lease.slot is None
    with DeviceLease(tmp_path, ["cpu"], timeout_s=1) as (slot, _):
        assert slot == 0


def test_leases_in_one_process_exclude_each_other(tmp_path: Path) -> None:
    first = DeviceLease(tmp_path, ["cpu", "cpu"])
    second = DeviceLease(tmp_path, ["cpu", "cpu"])
    third = DeviceLease(tmp_path, ["cpu", "cpu"], poll_s=0.01, timeout_s=0.1)
    assert first.acquire() == (0, "cpu")
    assert second.acquire() == (1, "cpu")
    with pytest.raises(TimeoutError):
        third.acquire()
    assert third.slot is None
    first.release()
    assert third.acquire() == (0, "cpu")
    assert third.device == "cpu"
    second.release()
    third.release()


def test_the_holder_pid_is_written_for_humans(tmp_path: Path) -> None:
    import os

    with DeviceLease(tmp_path, ["cpu"]):
        assert (tmp_path / "slot-0.lock").read_text() == f"{os.getpid()}\n"


def test_misuse_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one device"):
        DeviceLease(tmp_path, [])
    lease = DeviceLease(tmp_path, ["cpu", "cpu"])
    with pytest.raises(RuntimeError, match="no slot held"):
        _ = lease.device
    lease.acquire()
    with pytest.raises(RuntimeError, match="already holds slot 0"):
        lease.acquire()
    assert lease.slot == 0
    lease.release()
    lease.release()  # releasing twice is harmless


def test_lock_scope_separates_machines_and_visible_gpu_sets(monkeypatch) -> None:
    import socket

    monkeypatch.setattr(socket, "gethostname", lambda: "node 17.cluster")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert lock_scope() == "node-17.cluster"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert lock_scope() == "node-17.cluster_cvd-2-3"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # submitit without gpus_per_node
    assert lock_scope() == "node-17.cluster_cvd-none"
