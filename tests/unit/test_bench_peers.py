"""bench/peers: the peer apps compile, the peer settings hold together, and the table reads right.

No venv is made and nothing is started: `make bench-peers` does that.
"""

from __future__ import annotations

import argparse
import py_compile
from pathlib import Path

import pytest

from bench.peers import arq, celery, dramatiq, rq, saq, taskiq
from bench.peers.offload import WORKERS
from bench.peers.run import drain_count, io_count, parse
from bench.peers.system import APPS, SCENARIOS, Peer, WorkerSetting
from bench.peers.table import Cell, Column, Line, render
from bench.peers.venvs import WEB_PINS, stamp_text
from service.worker.main import WORKER_KINDS

PEERS: list[Peer] = [celery.PEER, dramatiq.PEER, arq.PEER, saq.PEER, taskiq.PEER, rq.PEER]


@pytest.mark.parametrize("path", sorted(APPS.glob("*.py")), ids=lambda path: path.name)
def test_app_file_compiles(path: Path, tmp_path: Path) -> None:
    py_compile.compile(str(path), cfile=str(tmp_path / "out.pyc"), doraise=True)


@pytest.mark.parametrize("peer", PEERS, ids=lambda peer: peer.name)
def test_peer_is_complete(peer: Peer) -> None:
    assert (APPS / f"{peer.app}.py").exists()
    assert peer.pins
    assert all("==" in pin for pin in peer.pins), "every peer package is pinned"
    assert peer.workers
    for setting in peer.workers:
        assert setting.command
        assert setting.slots >= 1
        assert set(setting.scenarios) <= set(SCENARIOS)


def test_row_labels_are_unique() -> None:
    labels = [setting.label for peer in PEERS for setting in peer.workers] + [s.label for s in WORKERS]
    assert len(labels) == len(set(labels))


def test_offload_rows_name_real_worker_kinds() -> None:
    for setting in WORKERS:
        kind = setting.command[setting.command.index("--kind") + 1]
        assert kind in WORKER_KINDS


def test_venv_stamp_holds_the_web_pins_in_order() -> None:
    assert stamp_text(("b==1", "a==2")) == "".join(f"{pin}\n" for pin in sorted({"a==2", "b==1", *WEB_PINS}))


def test_counts_scale_down_for_one_job_at_a_time() -> None:
    args = parse([])
    sequential = WorkerSetting("one", ("x",), slots=1, drain_cap=500)
    wide = WorkerSetting("wide", ("x",), slots=50)
    assert (drain_count(args, sequential), drain_count(args, wide)) == (500, 5000)
    assert (io_count(args, sequential), io_count(args, wide)) == (10, 200)


def test_parse_refuses_unknown_names() -> None:
    with pytest.raises(SystemExit):
        parse(["--systems", "offload,huey"])
    args: argparse.Namespace = parse(["--systems", "rq,offload", "--scenarios", "http", "--quick"])
    assert (args.systems, args.scenarios, args.rounds) == (["offload", "rq"], ["http"], 1)


def test_table_shows_medians_spreads_and_footnotes() -> None:
    columns = [Column("drain", "(a)"), Column("io", "(b)"), Column("http", "(d)")]
    lines = [
        Line("x", "x fast", {"drain": Cell([1000.0, 3000.0, 2000.0]), "io": Cell([0.5], note="scaled"),
                             "http": Cell([1234.0])}, note="two processes"),
        Line("x", "x slow", {"drain": Cell(error="x slow, drain: timed out"),
                             "http": Cell(note="the same web app as above")}),
    ]  # fmt: skip
    assert render(columns, lines).splitlines() == [
        "| system | worker setting | (a) | (b) | (d) |",
        "|---|---|---:|---:|---:|",
        "| x | x fast [1] | 2,000 jobs/s (1,000-3,000) | 0.50 s [2] | 1,234 req/s |",
        "| x | x slow | failed [3] | — | — [4] |",
        "",
        "1. two processes",
        "2. scaled",
        "3. x slow, drain: timed out",
        "4. the same web app as above",
    ]
