"""The ``heatcore`` command line: every command runs on the shipped data and the
simulator; bad arguments and bad files give one ``heatcore: error:`` line on
stderr and the documented exit code; ``record``/``live`` against a websocket
server on 127.0.0.1 (never a real exchange)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import heatcore as hc
from heatcore import cli
from heatcore.replay import as_events
from heatcore.sim import simulate

OKX = "okx_sol_doge_hype_2026-03-04.jsonl"
HL = "hyperliquid_btc_2025-12_2026-03.jsonl"
DAILY = "hyperliquid_daily_liq.csv"
SNAP_FIXTURE = Path(__file__).parent / "fixtures" / "snapshots" / "v1.0_btc_binance_okx.hcsnap"
COMMANDS = ("demo", "replay", "evaluate", "record", "live", "inspect", "venues")


def run(argv, capsys) -> tuple[int, str, str]:
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("heatcore: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def sim_file(tmp_path_factory) -> Path:
    res = simulate(hours=2, seed=6, venues=("binance", "okx"))
    path = tmp_path_factory.mktemp("sim") / "sim.jsonl.gz"
    hc.write_events(path, as_events(res.events), res.symbol)
    return path


@pytest.fixture(scope="module")
def sol_snapshot(tmp_path_factory) -> Path:
    """The engine after replaying the shipped OKX SOL day (``replay --snapshot``)."""
    from conftest import SHARED_DATA
    if not (SHARED_DATA / OKX).exists():
        pytest.skip("../shared/data is not present")
    out = tmp_path_factory.mktemp("snap") / "sol.hcsnap"
    assert cli.main(["replay", str(SHARED_DATA / OKX), "--symbol", "SOL", "--out", "",
                     "--snapshot", str(out), "--no-progress"]) == 0
    return out


# -- help, version, python -m ---------------------------------------------------------

@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys) -> None:
    rc, out, err = run([command, "--help"], capsys)
    assert rc == 0 and err == ""
    assert out.startswith(f"usage: heatcore {command}")
    assert "exit codes: 0 ok, 1" in " ".join(out.split())


def test_top_level_help_lists_the_commands(capsys) -> None:
    rc, out, _ = run(["--help"], capsys)
    assert rc == 0
    for c in COMMANDS:
        assert c in out


def _env() -> dict[str, str]:
    env = dict(os.environ)
    src = str(Path(hc.__file__).resolve().parents[1])
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_python_dash_m(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, "-m", "heatcore", "--version"], capture_output=True, text=True,
                       env=_env(), timeout=120, cwd=tmp_path)
    assert p.returncode == 0 and p.stdout.strip() == f"heatcore {hc.__version__}"
    p = subprocess.run([sys.executable, "-m", "heatcore", "demo", "--bogus"], capture_output=True,
                       text=True, env=_env(), timeout=120, cwd=tmp_path)
    assert p.returncode == 2 and p.stdout == ""
    assert one_error_line(p.stderr) == ("heatcore: error: unrecognized arguments: --bogus "
                                        "(see 'heatcore demo --help')")


# -- bad arguments and bad files --------------------------------------------------------

BAD = [
    ([], 2, "required: COMMAND"),
    (["frobnicate"], 2, "invalid choice"),
    (["demo", "--hours", "x"], 2, "--hours"),
    (["demo", "--hours", "0"], 2, "must be positive"),
    (["demo", "--scale", "cubic"], 2, "--scale"),
    (["demo", "--out", "{tmp}/no/such/dir/x.png"], 2, "does not exist"),
    (["replay"], 2, "required: file"),
    (["replay", "{tmp}/missing.jsonl"], 2, "no such file"),
    (["replay", "{tmp}"], 2, "is a directory"),
    (["replay", "{garbage}"], 2, "garbage.jsonl:1: invalid JSON"),
    (["replay", "{empty}"], 1, "holds no events"),
    (["replay", "{okx}"], 2, "several assets"),
    (["replay", "{okx}", "--symbol", "BTC"], 2, "no symbol 'BTC'"),
    (["replay", "{okx}", "--symbol", "SOL", "--every", "soon"], 2, "--every"),
    (["replay", "{okx}", "--symbol", "SOL", "--venue", "nowhere"], 2, "unknown venue"),
    (["replay", "{okx}", "--symbol", "SOL", "--venue", "binance"], 2, "no binance events"),
    (["replay", "{okx}", "--symbol", "SOL", "--step", "-1"], 2, "--step"),
    (["evaluate", "{tmp}/missing.jsonl"], 2, "no such file"),
    (["evaluate", "{garbage}"], 2, "garbage.jsonl:1: invalid JSON"),
    (["evaluate", "{okx}", "--horizon", "-1h"], 2, "--horizon"),
    (["evaluate", "{okx}", "--symbol", "XRP"], 2, "no symbol 'XRP'"),
    (["evaluate", "{okx}", "--png", "{tmp}/no/dir/x"], 2, "does not exist"),
    (["evaluate", "{hl}"], 1, "no liquidations to score"),
    (["evaluate", "{empty}"], 1, "no liquidations to score"),
    (["inspect"], 2, "required: snapshot"),
    (["inspect", "{tmp}/missing.hcsnap"], 2, "no such file"),
    (["inspect", "{garbage}"], 2, "not a heatcore snapshot"),
    (["inspect", "{truncated}"], 2, "truncated"),
    (["inspect", "{fixture}", "--venue", "kraken"], 2, "no venue kraken"),
    (["inspect", "{fixture}", "--levels", "11"], 2, "--levels"),
    (["record"], 2, "required: --out"),
    (["record", "--out", "{tmp}/x.jsonl", "--url", "nonsense"], 2, "VENUE=URL"),
    (["record", "--out", "{tmp}/x.jsonl", "--venues", "nowhere"], 2, "no adapter for venue 'nowhere'"),
    (["record", "--out", "{tmp}/no/dir/x.jsonl", "--venues", "bybit"], 2, "does not exist"),
    (["record", "--out", "{tmp}/x.jsonl", "--venues", "bybit", "--url", "okx=ws://127.0.0.1:1/"], 2,
     "not in --venues"),
    (["live", "--duration", "0"], 2, "--duration must be positive"),
    (["live", "--step", "-5"], 2, "--step must be positive"),
    (["live", "--duration", "x"], 2, "--duration"),
    (["venues", "--xml"], 2, "unrecognized arguments"),
]


@pytest.mark.parametrize(("argv", "code", "words"), BAD, ids=[" ".join(a) or "(none)" for a, _, _ in BAD])
def test_bad_input_is_one_line_and_an_exit_code(argv, code, words, tmp_path: Path, capsys) -> None:
    from conftest import SHARED_DATA

    if any("{okx}" in a or "{hl}" in a for a in argv) and not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("this is not json\n")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    truncated = tmp_path / "trunc.hcsnap"
    truncated.write_bytes(SNAP_FIXTURE.read_bytes()[:200])
    subst = {"{tmp}": str(tmp_path), "{okx}": str(SHARED_DATA / OKX), "{hl}": str(SHARED_DATA / HL),
             "{garbage}": str(garbage), "{empty}": str(empty), "{truncated}": str(truncated),
             "{fixture}": str(SNAP_FIXTURE)}
    args = []
    for a in argv:
        for k, v in subst.items():
            a = a.replace(k, v)
        args.append(a)
    rc, out, err = run(args, capsys)
    assert rc == code, err
    line = one_error_line(err)
    assert words in line, line
    assert out == ""


def test_debug_shows_the_exception(monkeypatch, capsys) -> None:
    monkeypatch.setenv("HEATCORE_DEBUG", "1")
    with pytest.raises(cli.CLIError, match="no such file"):
        cli.main(["inspect", "/no/such/file.hcsnap"])


def test_interrupt_is_130(monkeypatch, capsys) -> None:
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(hc.sim, "simulate", interrupted)
    rc, _out, err = run(["demo", "--no-plot"], capsys)
    assert rc == 130 and one_error_line(err) == "heatcore: error: interrupted"


def _interrupt(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run ``heatcore ARGV`` in a child, send it a real SIGINT (Ctrl-C) once it is
    inside the command, and collect what it printed."""
    code = ("import sys\nfrom heatcore import cli\nprint('ready', flush=True)\n"
            f"sys.exit(cli.main({argv!r}))\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=_env(), cwd=cwd)
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "ready"
    time.sleep(1.0)  # past argument parsing, inside the long command
    assert p.poll() is None, "the command ended before it could be interrupted"
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    return subprocess.CompletedProcess(argv, p.returncode, out, err)


def test_sigint_during_a_long_demo_exits_130(tmp_path: Path) -> None:
    p = _interrupt(["demo", "--hours", "500", "--no-plot"], tmp_path)
    assert p.returncode == 130, p.stderr
    assert one_error_line(p.stderr) == "heatcore: error: interrupted"


def test_sigint_stops_record_cleanly_with_130(tmp_path: Path) -> None:
    pytest.importorskip("websockets")
    out = tmp_path / "rec.jsonl.gz"
    # port 1 on the loopback refuses at once: the client keeps retrying until Ctrl-C
    p = _interrupt(["record", "--venues", "bybit", "--url", "bybit=ws://127.0.0.1:1/", "--out", str(out)],
                   tmp_path)
    assert p.returncode == 130, p.stderr
    assert "Traceback" not in p.stderr
    assert f"{out}: 0 records" in p.stdout
    assert list(hc.events.iter_records(out)) == []  # closed: a valid (empty) gzip stream


# -- the commands on the simulator and the shipped data ----------------------------------

def test_demo(tmp_path: Path, capsys) -> None:
    png = tmp_path / "demo.png"
    rc, out, err = run(["demo", "--hours", "1", "--seed", "3", "--out", png, "--every-min", "5"], capsys)
    assert rc == 0
    assert "heatcore demo: 1 simulated hours, 22 venues" in out
    assert f"wrote {png}" in out
    for v in hc.VENUES:
        assert any(line.startswith(v + " ") for line in out.splitlines()), v
    assert png.stat().st_size > 10_000
    assert "%|" not in err and "\r" not in err  # no progress bar: stderr is not a terminal
    rc, out, err = run(["demo", "--hours", "1", "--seed", "3", "--no-plot", "--json"], capsys)
    assert rc == 0
    d = json.loads(out)
    assert d["symbol"] == "BTCUSDT" and d["figures"] == [] and d["liquidations"] > 0
    assert [v["venue"] for v in d["venues"]] == list(hc.VENUES)
    res = simulate(hours=1, seed=3)
    assert d["events"] == res.events.size
    assert d["liquidations"] == int((res.events["kind"] == 2).sum())


def test_demo_html(tmp_path: Path, capsys) -> None:
    pytest.importorskip("plotly")
    page = tmp_path / "demo.html"
    rc, out, _ = run(["demo", "--hours", "0.5", "--no-plot", "--html", page], capsys)
    assert rc == 0 and f"wrote {page}" in out
    text = page.read_text()
    assert "Plotly.newPlot" in text and '"type":"heatmap"' in text.replace(" ", "")


def test_venues(capsys) -> None:
    rc, out, _ = run(["venues"], capsys)
    assert rc == 0 and all(v in out for v in hc.VENUES)
    rc, out, _ = run(["venues", "--json"], capsys)
    d = json.loads(out)
    assert [r["venue"] for r in d] == list(hc.VENUES)
    for r in d:
        assert sum(r["prior_bands"].values()) == pytest.approx(1.0)
        assert r["max_leverage"] == hc.get_venue(r["venue"]).max_leverage


def test_replay_evaluate_inspect_on_the_simulator(sim_file: Path, tmp_path: Path, capsys) -> None:
    out_png, snap = tmp_path / "map.png", tmp_path / "e.hcsnap"
    rc, out, err = run(["replay", sim_file, "--out", out_png, "--every", "10min", "--snapshot", snap,
                        "--no-progress"], capsys)
    assert rc == 0 and out.startswith("BTC: ")
    assert out_png.stat().st_size > 10_000 and f"wrote {snap}" in err
    rc, out, _ = run(["inspect", snap, "--json"], capsys)
    assert rc == 0
    info = json.loads(out)
    eng = hc.Engine.load(snap)
    assert info["venues"] == list(eng.venues) == ["binance", "okx"]
    assert info["events_seen"] == eng.events_seen > 0
    assert set(info["mixes"]) == {"binance", "okx"}
    assert info["mixes"]["okx"]["long"]["learned"] == pytest.approx(eng.leverage_mix("okx", "long")[1].tolist())
    assert sum(info["mixes"]["okx"]["long"]["learned_bands"]) == pytest.approx(1.0)
    for side in ("long", "short"):
        rows = eng.cascade(side, 10)
        assert [r["price"] for r in info["cascade"][side]] == rows["price"].tolist()
        assert [r["probability"] for r in info["cascade"][side]] == rows["probability"].tolist()
    assert info["calibration"]["okx"]["venue"] == "okx"
    rc, out, _ = run(["evaluate", sim_file, "--json", "--no-progress"], capsys)
    assert rc == 0
    d = json.loads(out)["BTC"]
    assert d["n_liquidations"] > 0 and set(d["per_venue"]) == {"binance", "okx"}


def test_replay_on_shared_data(shared_data: Path, tmp_path: Path, capsys) -> None:
    files = {k: tmp_path / f"sol.{k}" for k in ("png", "profile.png", "forecast.png", "html", "hcsnap")}
    argv = ["replay", shared_data / OKX, "--symbol", "SOL", "--out", files["png"],
            "--profile", files["profile.png"], "--forecast", files["forecast.png"],
            "--snapshot", files["hcsnap"], "--scale", "quantile", "--no-progress"]
    try:
        import plotly  # noqa: F401
        argv += ["--html", files["html"]]
    except ImportError:
        files.pop("html")
    rc, out, err = run(argv, capsys)
    assert rc == 0, err
    assert out.startswith("SOL: 1052 liquidations")
    for f in files.values():
        assert f.stat().st_size > 10_000, f
    # a 90-day file: the default cadence grows so that the replay keeps ~500 maps at most
    rc, out, err = run(["replay", shared_data / HL, "--out", tmp_path / "hl.png"], capsys)
    assert rc == 0, err
    n_snaps = int(out.split(" snapshots")[0].rsplit(" ", 1)[1])
    ts = np.concatenate([e["ts"] for e in hc.read_events_by_symbol(shared_data / HL).values()])
    span_days = (ts.max() - ts.min()) / 86_400_000
    assert 250 <= n_snaps <= 500 and span_days > 80
    rc, out, _ = run(["replay", shared_data / OKX, "--symbol", "DOGE", "--venue", "okx", "--side", "long",
                      "--out", tmp_path / "doge.png", "--no-liquidations"], capsys)
    assert rc == 0 and out.startswith("DOGE: 1422 liquidations")


def test_evaluate_on_shared_data(shared_data: Path, tmp_path: Path, capsys) -> None:
    rc, out, err = run(["evaluate", shared_data / OKX, "--symbol", "HYPE", "--json", "--no-progress",
                        "--png", tmp_path / "ev"], capsys)
    assert rc == 0, err
    d = json.loads(out)
    assert set(d) == {"HYPE"} and d["HYPE"]["n_liquidations"] == 99
    for name in ("skill", "scores", "mix"):
        assert (tmp_path / f"ev_HYPE_{name}.png").stat().st_size > 5000
    rc, out, err = run(["evaluate", shared_data / HL, "--daily-csv", shared_data / DAILY, "--json"], capsys)
    assert rc == 0, err
    d = json.loads(out)
    assert d["daily_volume_check"]["days"]
    rc, out, _ = run(["evaluate", shared_data / OKX, "--symbol", "HYPE", "--no-progress"], capsys)
    assert rc == 0 and "| learned |" in out


def test_inspect_text_and_figures(sol_snapshot: Path, tmp_path: Path, capsys) -> None:
    rc, out, err = run(["inspect", sol_snapshot, "--png", tmp_path / "sol"], capsys)
    assert rc == 0, err
    assert "SOL-USDT-SWAP, step 0.05, 1 venues" in out
    assert "leverage mix by band" in out and "okx          long" in out
    assert "calibration" in out and "cascade ladder" in out
    eng = hc.Engine.load(sol_snapshot)
    n_levels = eng.cascade("long", 10).size + eng.cascade("short", 10).size
    assert sum(1 for line in out.splitlines() if " L" in line and "p=" in line) == n_levels
    for name in ("profile", "mix", "cascade"):
        assert (tmp_path / f"sol_{name}.png").stat().st_size > 10_000
    rc, out, _ = run(["inspect", SNAP_FIXTURE, "--venue", "okx", "--levels", "3", "--json"], capsys)
    assert rc == 0
    d = json.loads(out)
    assert list(d["mixes"]) == ["okx"] and list(d["calibration"]) == ["okx"]
    assert all(len(v) <= 3 for v in d["cascade"].values())


# -- record and live against a local websocket server ------------------------------------

def _bybit_messages(n: int = 40) -> list[dict]:
    t0 = 1767225600000
    rng = np.random.default_rng(2)
    out = []
    price = 90_000.0
    for i in range(n):
        price += float(rng.normal(0, 40))
        out.append({"topic": "tickers.BTCUSDT", "type": "delta", "cs": i, "ts": t0 + 1000 * i,
                    "data": {"symbol": "BTCUSDT", "markPrice": f"{price:.1f}",
                             **({"openInterestValue": f"{2e9 * (1 + i / 1e3):.2f}"} if i % 5 == 0 else {})}})
        if i % 7 == 3:
            out.append({"topic": "allLiquidation.BTCUSDT", "type": "snapshot", "ts": t0 + 1000 * i + 5,
                        "data": [{"T": t0 + 1000 * i + 5, "s": "BTCUSDT", "S": "Sell" if i % 2 else "Buy",
                                  "v": "0.5", "p": f"{price * (0.999 if i % 2 else 1.001):.1f}"}]})
    return out


def test_record_and_live_against_a_local_server(tmp_path: Path, capsys) -> None:
    websockets = pytest.importorskip("websockets")
    messages = _bybit_messages()

    async def scenario():
        async def handler(ws):
            for m in messages:
                await ws.send(json.dumps(m))
            await ws.wait_closed()

        server = await websockets.serve(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        common = ["--venues", "bybit", "--symbol", "BTCUSDT", "--url", f"bybit=ws://127.0.0.1:{port}/",
                  "--duration", "1.5"]
        loop = asyncio.get_running_loop()
        try:
            rec = await loop.run_in_executor(None, cli.main, ["record", *common, "--out",
                                                              str(tmp_path / "rec.jsonl.gz")])
            liv = await loop.run_in_executor(None, cli.main, ["live", *common, "--snapshot",
                                                              str(tmp_path / "live.hcsnap"),
                                                              "--snapshot-every", "0.5"])
        finally:
            server.close()
            await server.wait_closed()
        return rec, liv

    rec, liv = asyncio.run(scenario())
    out, err = capsys.readouterr()
    assert (rec, liv) == (0, 0), err
    recs = list(hc.events.iter_records(tmp_path / "rec.jsonl.gz"))
    kinds = {r["kind"] for _, r in recs}
    assert kinds == {"price", "oi", "liquidation"}
    assert f"bybit: messages={len(messages)}" in out
    rc, out, err = run(["inspect", tmp_path / "live.hcsnap", "--json"], capsys)
    assert rc == 0, err
    d = json.loads(out)
    assert d["venues"] == ["bybit"] and d["events_seen"] == len(recs)
    rc, out, err = run(["replay", tmp_path / "rec.jsonl.gz", "--out", tmp_path / "rec.png", "--every", "5"],
                       capsys)
    assert rc == 0, err


def test_record_with_nothing_received_is_exit_1(tmp_path: Path, capsys) -> None:
    pytest.importorskip("websockets")
    # port 1 on the loopback: the connection is refused at once, nothing leaves the machine
    rc, out, err = run(["record", "--venues", "bybit", "--url", "bybit=ws://127.0.0.1:1/", "--duration", "0.5",
                        "--out", tmp_path / "empty.jsonl"], capsys)
    assert rc == 1
    assert err.strip().splitlines()[-1] == ("heatcore: error: no message received from any venue "
                                            "(unreachable or wrong URL?)")
    assert "Traceback" not in err and "bybit: messages=0" in out


# -- optional dependencies ----------------------------------------------------------------

def test_import_needs_numpy_only(tmp_path: Path) -> None:
    """``import heatcore`` (and the command line's parser) with matplotlib, plotly,
    tqdm and websockets unavailable; the progress bar falls back to plain text."""
    code = (
        "import sys, io\n"
        "for m in ('matplotlib', 'plotly', 'tqdm', 'websockets'):\n"
        "    sys.modules[m] = None\n"
        "import heatcore, heatcore.plot, heatcore.cli, heatcore.replay\n"
        "heatcore.cli.build_parser()\n"
        "from heatcore.replay import Progress\n"
        "b = io.StringIO(); p = Progress(10, 'x', stream=b, enabled=True)\n"
        "p.update(10); p.close(); assert '100.0%' in b.getvalue()\n"
        "print(sorted(m for m in ('matplotlib', 'plotly', 'tqdm', 'websockets') if sys.modules[m]))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(),
                       timeout=120, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


@pytest.mark.parametrize(("module", "argv", "words"), [
    ("matplotlib", ["demo", "--hours", "0.5"], 'pip install "heatcore[plot]"'),
    ("plotly", ["demo", "--hours", "0.5", "--no-plot", "--html", "{tmp}/x.html"], 'pip install "heatcore[html]"'),
    ("websockets", ["record", "--venues", "bybit", "--out", "{tmp}/x.jsonl"], 'pip install "heatcore[live]"'),
])
def test_missing_extra_is_one_line_and_exit_1(module, argv, words, monkeypatch, tmp_path: Path,
                                              capsys) -> None:
    for m in [k for k in sys.modules if k == module or k.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, m)
    monkeypatch.setitem(sys.modules, module, None)
    rc, out, err = run([a.replace("{tmp}", str(tmp_path)) for a in argv], capsys)
    assert rc == 1 and out == ""
    assert words in one_error_line(err)
    assert not list(tmp_path.iterdir())  # failed before any work
