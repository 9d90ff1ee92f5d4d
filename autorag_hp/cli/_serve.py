"""`autorag-hp serve`: the online tuner as an HTTP service (needs the ``server`` extra)."""

from __future__ import annotations

import argparse
import errno
import ipaddress
import os
import signal
import socket
import sys
import threading
import warnings
from pathlib import Path

__all__ = ["add_parser", "run"]

SWITCH_INTERVAL_S = 0.0005  # sys.setswitchinterval while serving (Python's default: 0.005)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "serve",
        help="serve an online tuner over HTTP (POST /suggest, POST /feedback, GET /best, GET /stats)",
        description=(
            "Serve an OnlineTuner over HTTP. Every suggestion and feedback is journaled to --journal; "
            "restarting on the same journal restores the state. The bearer token, if any, is read from "
            "the environment variable named by --token-env."
        ),
    )
    p.add_argument("--space", required=True, help="search space file (.toml, .json or .yaml)")
    p.add_argument("--journal", required=True, help="journal file (JSON lines); resumed if it exists")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=8765, help="port (0: any free port, see --port-file)")
    p.add_argument("--strategy", default="hier-ts", help="online strategy (default hier-ts)")
    p.add_argument("--seed", type=int, default=0)
    forget = p.add_mutually_exclusive_group()
    forget.add_argument("--discount", type=float, metavar="GAMMA", help="discounted statistics, 0 < GAMMA < 1")
    forget.add_argument("--window", type=int, metavar="N", help="sliding-window statistics over the last N rewards")
    p.add_argument("--expiry", type=float, default=3600.0, metavar="SECONDS", help="suggestion lifetime (default 3600)")
    p.add_argument("--guardrail-margin", type=float, metavar="M", help="never explore configurations confidently worse than the best by M")
    p.add_argument("--fsync", choices=["always", "interval", "never"], default="always",
                   help="always: acknowledge feedback after a (group) fsync; interval: fsync every --fsync-interval-ms")
    p.add_argument("--fsync-interval-ms", type=float, default=5.0)
    p.add_argument("--snapshot-every", type=int, default=20_000, metavar="RECORDS")
    p.add_argument("--warm-start", metavar="JOURNAL", help="offline tune or online journal to start from (new journals only)")
    p.add_argument("--warm-start-mode", choices=["continue", "observe", "reset"], default="continue",
                   help="continue: the same strategy as the journal, continued; observe: its rewards as observations")
    p.add_argument("--token-env", default="AUTORAG_HP_TOKEN", metavar="VAR",
                   help="environment variable holding the bearer token (unset or empty: no token)")
    p.add_argument("--max-body-bytes", type=int, default=65_536)
    p.add_argument("--max-batch", type=int, default=1_000, metavar="N",
                   help="most suggestions per POST /suggest {\"n\": N} and items per feedback list (default 1000)")
    p.add_argument("--port-file", help="write the bound port here once listening (for --port 0)")
    p.add_argument("--lifetime", type=float, metavar="SECONDS", help="stop by itself after this long (tests, demos)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Serve until stopped; every startup problem is one line on stderr and exit code 2."""
    with warnings.catch_warnings():
        warnings.showwarning = _warn_one_line
        try:
            return _serve(args)
        except (ValueError, OSError) as exc:  # JournalError and JournalLocked are ValueErrors
            print(f"autorag-hp serve: error: {_one_line(exc)}", file=sys.stderr, flush=True)
            return 2


def _serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from autorag_hp.online import create_app
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ValueError(f"autorag-hp serve needs the server extra: pip install 'autorag-hp[server]' ({exc})") from None
    from autorag_hp.online import (
        Discounted,
        Guardrail,
        OnlineTuner,
        Persistence,
        SlidingWindow,
        Stationary,
        WarmStart,
    )
    from autorag_hp.space import SearchSpace

    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must satisfy 0 <= port <= 65535, got {args.port}")
    if args.max_batch < 1:
        raise ValueError(f"--max-batch must be an integer >= 1, got {args.max_batch}")
    token = os.environ.get(args.token_env) or None
    space = SearchSpace.from_file(args.space)
    if args.discount is not None:
        rule = Discounted(args.discount)
    elif args.window is not None:
        rule = SlidingWindow(args.window)
    else:
        rule = Stationary()
    persistence = Persistence(args.journal, fsync=args.fsync, interval_ms=args.fsync_interval_ms,
                              snapshot_every=args.snapshot_every)
    sock = _bind(args.host, args.port)  # before the journal is touched: a second server fails here harmlessly
    try:
        if not _is_loopback(args.host) and token is None:
            print(f"autorag-hp serve: warning: binding {args.host} without a token (set {args.token_env})", file=sys.stderr)
        journal_exists = Path(args.journal).is_file() and Path(args.journal).stat().st_size > 0
        tuner = OnlineTuner(
            space,
            strategy=args.strategy,
            seed=args.seed,
            stats=rule,
            expiry_s=args.expiry,
            guardrail=None if args.guardrail_margin is None else Guardrail(args.guardrail_margin),
            persistence=persistence,
            warm_start=None if args.warm_start is None or journal_exists else WarmStart(args.warm_start, args.warm_start_mode),
        )
    except BaseException:
        sock.close()
        raise
    try:
        app = create_app(tuner, token=token, max_body_bytes=args.max_body_bytes, max_batch=args.max_batch,
                         close_tuner_on_shutdown=True)
        sock.listen(2048)  # connections queue from now on, so the port file below is a ready signal
        port = sock.getsockname()[1]
        # no proxy-header rewriting (client addresses are not used) and no Server header: less work per request
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", backlog=2048,
                                proxy_headers=False, server_header=False)
        server = uvicorn.Server(config)
        if args.lifetime is not None:
            timer = threading.Timer(args.lifetime, lambda: setattr(server, "should_exit", True))
            timer.daemon = True
            timer.start()
        if args.port_file:
            from autorag_hp._io import atomic_write_text

            atomic_write_text(args.port_file, str(port), fsync=False)
        stats = tuner.stats()
        print(
            f"autorag-hp serve: http://{args.host}:{port} strategy={args.strategy} "
            f"feedback={stats['feedback']} suggestions={stats['suggestions']} boot={stats['boot']} "
            f"token={'on' if token else 'off'}",
            file=sys.stderr, flush=True,
        )
        # uvicorn shuts down gracefully on SIGTERM and then re-raises it; this handler makes
        # that re-raise a no-op, so a requested stop exits 0 after the final snapshot.
        signal.signal(signal.SIGTERM, lambda signum, frame: None)
        # The journal's thread runs each group fdatasync and then needs the GIL to acknowledge the
        # feedbacks it covered; with Python's default switch interval (5 ms) a busy event loop could
        # keep the GIL that long before handing it over.
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        server.run(sockets=[sock])
    finally:
        tuner.close()
        sock.close()
    return 0


def _bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (not yet listening); errors name the argument."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise ValueError(f"--host {host!r}: not an address to bind ({getattr(exc, 'strerror', None) or exc})") from None
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ValueError(f"--port {port}: address {host}:{port} is already in use") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise ValueError(f"--host {host!r}: not an address of this machine ({exc.strerror})") from None
        raise ValueError(f"--host {host!r} --port {port}: cannot bind ({exc.strerror or exc})") from None
    return sock


def _one_line(exc: BaseException) -> str:
    text = str(exc) if not isinstance(exc, OSError) or not exc.filename else f"{exc.filename}: {exc.strerror}"
    return " ".join(text.split())


def _warn_one_line(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    print(f"autorag-hp serve: warning: {_one_line(Exception(str(message)))}", file=sys.stderr, flush=True)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
