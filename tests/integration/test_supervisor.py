"""The supervisor and runtime with real processes and sockets: ready handshake,
restart after kill -9, bad frames on every bound socket, gap detection and fill,
`xmc down` leaving nothing behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
from pathlib import Path

import msgspec
import zmq

from bus.codec import Codec
from bus.endpoints import Endpoints
from bus.messages import Alert, CmdAck, Envelope, ReplayRequest, Replayed, Severity
from configs.load import load_config
from helpers import actor, actor_processes, status, wait_for, write_config, xmc

CONFIG = """
[run]
heartbeat_s = 0.2
heartbeat_timeout_s = 3.0
restart_backoff_s = 0.1
[actors.journal]
kind = "journal"
[actors.feed]      # a publisher the test stands in for
kind = "journal"
enabled = false
"""


def _config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "c.toml", CONFIG)


def test_up_detach_reports_ready_and_down_leaves_no_process(tmp_path: Path, run_dir: Path) -> None:
    cfg = _config(tmp_path)
    xmc("up", str(cfg), "--detach", run_dir=run_dir, check=True)
    doc = status(run_dir)
    assert [a["name"] for a in doc["actors"]] == ["journal"]
    a = doc["actors"][0]
    assert a["state"] in ("ready", "running") and a["pid"] and a["restarts"] == 0
    assert {"heartbeat_age_s", "msgs_in", "msgs_out", "decode_errors", "gaps"} <= set(a)
    assert actor_processes(run_dir)
    xmc("down", run_dir=run_dir, check=True)
    assert actor_processes(run_dir) == []
    final = json.loads(xmc("status", "--json", run_dir=run_dir, check=True).stdout)
    assert final["running"] is False and final["actors"][0]["state"] == "stopped"


def test_kill9_of_an_actor_is_restarted_and_counted(tmp_path: Path, run_dir: Path) -> None:
    xmc("up", str(_config(tmp_path)), "--detach", run_dir=run_dir, check=True)
    pid = actor(run_dir, "journal")["pid"]
    os.kill(pid, signal.SIGKILL)
    a = wait_for(lambda: (x := actor(run_dir, "journal"))["restarts"] == 1 and x["state"] == "running" and x, 20,
                 "journal restarted")
    assert a["pid"] != pid


def test_up_with_duration_shuts_down_cleanly_and_exits_zero(tmp_path: Path, run_dir: Path) -> None:
    proc = xmc("up", str(_config(tmp_path)), "--duration", "1.5", run_dir=run_dir)
    assert proc.returncode == 0, proc.stderr
    assert actor_processes(run_dir) == []
    log = (run_dir / "logs" / "journal.jsonl").read_text()
    assert '"event":"actor_stopped"' in log


def test_invalid_config_exits_2_naming_every_error(tmp_path: Path, run_dir: Path) -> None:
    bad = write_config(tmp_path / "bad.toml", '[run]\nseed = "x"\nbogus = 1\n[actors.j]\nkind = "nope"\n')
    for args in (("check", str(bad)), ("up", str(bad), "--run-dir", str(run_dir))):
        proc = xmc(*args)
        assert proc.returncode == 2
        for fragment in ("run.seed", "run.bogus", "actors.j.kind"):
            assert fragment in proc.stderr
    assert xmc("check", str(_config(tmp_path))).returncode == 0


def test_garbage_and_wrong_type_frames_on_every_bound_socket_are_counted_and_survived(tmp_path: Path, run_dir: Path) -> None:
    cfg_path = _config(tmp_path)
    xmc("up", str(cfg_path), "--detach", run_dir=run_dir, check=True)
    eps = Endpoints(load_config(cfg_path), run_dir)
    ctx = zmq.Context()
    wrong_type = msgspec.msgpack.encode({"not": "an envelope"})
    for ep in (eps.cmd("journal"), eps.supervisor_ctl(), eps.supervisor_cli()):
        d = ctx.socket(zmq.DEALER)
        d.setsockopt(zmq.LINGER, 1000)
        d.connect(ep)
        d.send(b"\x00garbage\xff")
        d.send(wrong_type)
        d.send_multipart([b"two", b"parts"])
        d.close()
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # not even ZMTP, on the PUB socket
    raw.connect(eps.pub("journal")[len("ipc://"):])
    raw.sendall(b"\xde\xad\xbe\xef" * 64)
    raw.close()
    pub = ctx.socket(zmq.XPUB)
    pub.bind(eps.pub("feed"))
    assert pub.poll(10_000), "journal never subscribed"
    pub.recv()
    pub.send(b"risk.alert|" + b"\x93garbage")  # a topic the journal takes live
    pub.send(b"risk.alert|" + wrong_type)
    ctx.destroy(0)

    def counted() -> dict | None:
        doc = status(run_dir)
        j = next(a for a in doc["actors"] if a["name"] == "journal")
        return doc if j["decode_errors"] >= 5 and doc["supervisor"]["decode_errors"] >= 6 else None

    doc = wait_for(counted, 15, "bad frames counted")
    j = next(a for a in doc["actors"] if a["name"] == "journal")
    assert j["state"] == "running" and j["restarts"] == 0
    log = (run_dir / "logs" / "journal.jsonl").read_text()
    assert '"event":"frame_dropped"' in log


def test_sequence_gap_is_detected_recorded_and_filled_from_the_publisher(tmp_path: Path, run_dir: Path) -> None:
    cfg_path = _config(tmp_path)
    xmc("up", str(cfg_path), "--detach", run_dir=run_dir, check=True)
    eps = Endpoints(load_config(cfg_path), run_dir)
    ctx = zmq.Context()
    pub = ctx.socket(zmq.XPUB)
    pub.bind(eps.pub("feed"))
    router = ctx.socket(zmq.ROUTER)
    router.bind(eps.cmd("feed"))
    assert pub.poll(10_000), "journal never subscribed"
    pub.recv()
    codec = Codec()
    frames = {}
    for seq in range(1, 7):
        env = Envelope(src="feed", epoch=1, seq=seq, ts_ns=seq, body=Alert(severity=Severity.INFO, code="T", text=str(seq)))
        frames[seq] = bytes(codec.encode_frame("risk.alert", env))
    for seq in (1, 2, 5, 6):  # 3 and 4 are lost
        pub.send(frames[seq])
    def replay_request() -> tuple[bytes, Envelope]:  # the journal also pulls market data here: skip those requests
        while router.poll(10_000):
            peer, raw = router.recv_multipart()
            req = codec.decode(raw)
            if isinstance(req.body, ReplayRequest):
                return peer, req
            router.send_multipart([peer, codec.encode(Envelope(src="feed", epoch=1, seq=req.seq, ts_ns=0,
                                                                body=CmdAck(ok=True, data={"replayed": "0"})))])
        raise AssertionError("journal asked for no replay")

    peer, req = replay_request()
    assert (req.body.topic, req.body.first, req.body.last) == ("risk.alert", 3, 4)
    for seq in (3, 4):
        router.send_multipart([peer, codec.encode(Envelope(src="feed", epoch=1, seq=req.seq, ts_ns=0,
                                                           body=Replayed(topic="risk.alert", frame=frames[seq])))])
    router.send_multipart([peer, codec.encode(Envelope(src="feed", epoch=1, seq=req.seq, ts_ns=0,
                                                       body=CmdAck(ok=True, data={"replayed": "2"})))])

    def journalled() -> list | None:
        db = sqlite3.connect(run_dir / "journal.sqlite")
        try:
            seqs = [r[0] for r in db.execute("SELECT seq FROM events WHERE src='feed' ORDER BY seq")]
            inc = db.execute("SELECT kind, first_seq, last_seq, recovered FROM incidents WHERE kind = 'gap'").fetchall()
        finally:
            db.close()
        return [seqs, inc] if seqs == [1, 2, 3, 4, 5, 6] and inc and inc[0][3] == 2 else None

    seqs, incidents = wait_for(journalled, 15, "gap filled in the journal")
    assert incidents == [("gap", 3, 4, 2)]  # the feed started at seq 1, so there was nothing to catch up
    assert actor(run_dir, "journal")["gaps"] == 2
    ctx.destroy(0)


def test_restart_command_restarts_one_actor(tmp_path: Path, run_dir: Path) -> None:
    xmc("up", str(_config(tmp_path)), "--detach", run_dir=run_dir, check=True)
    pid = actor(run_dir, "journal")["pid"]
    xmc("restart", "journal", run_dir=run_dir, check=True)
    wait_for(lambda: (a := actor(run_dir, "journal"))["pid"] not in (None, pid) and a["state"] == "running", 20, "restart")
    assert xmc("restart", "nobody", run_dir=run_dir).returncode == 1


def test_halt_and_resume_reach_every_actor(tmp_path: Path, run_dir: Path) -> None:
    xmc("up", str(_config(tmp_path)), "--detach", run_dir=run_dir, check=True)
    xmc("halt", "--reason", "drill", run_dir=run_dir, check=True)
    kill = status(run_dir)["supervisor"]["kill_switch"]
    assert kill["halted"] and kill["reason"] == "drill" and kill["by"].startswith("local:"), kill
    log = run_dir / "logs" / "journal.jsonl"
    wait_for(lambda: '"reason":"drill"' in log.read_text(), 10, "kill switch delivered")
    xmc("resume", run_dir=run_dir, check=True)
    assert status(run_dir)["supervisor"]["kill_switch"]["halted"] is False


def test_cli_without_a_running_supervisor_fails_with_exit_1(run_dir: Path) -> None:
    for args in (("halt",), ("resume",), ("restart", "x"), ("status",)):
        proc = xmc(*args, run_dir=run_dir)
        assert proc.returncode == 1, args
        assert "no" in proc.stderr.lower()
