"""`blackbox-zo prefer CONFIG` serves the voting page; `blackbox-zo prefer export RUN --out F` writes DPO JSONL.

Arguments are checked, and the config validated, before the model is loaded or a port is opened.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from blackbox_zo.setup.config import ConfigError
from blackbox_zo.setup.parser import Parser  # argparse with the CLI's one-line error format

TOKEN_ENV = "BLACKBOX_ZO_PREFER_TOKEN"


def serve_parser() -> argparse.ArgumentParser:
    p = Parser(prog="blackbox-zo prefer", description="Serve a local web page where people pick the "
                                "better of two completions; their votes take pairwise zeroth-order steps. "
                                "`blackbox-zo prefer export RUN --out votes.jsonl` writes the votes as a DPO dataset.")
    p.add_argument("config", help="preference config (.yaml/.json), e.g. examples/prefer.yaml")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    p.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                   help=f"access token (>= 16 characters), required with a non-loopback --host; default ${TOKEN_ENV}")
    p.add_argument("--output", help="run directory (default: the config's `output`)")
    return p


def export_parser() -> argparse.ArgumentParser:
    p = Parser(prog="blackbox-zo prefer export",
                                description="Write a preference run's votes as JSONL with prompt/chosen/rejected "
                                            "(TRL DPO format); ties and both-bad votes are skipped.")
    p.add_argument("run", help="run directory of `blackbox-zo prefer` (holds votes.sqlite)")
    p.add_argument("--out", required=True, help="output .jsonl file, outside every run folder")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    return p


def cmd_prefer(args) -> int:
    """Dispatch `prefer export ...` or `prefer CONFIG ...`."""
    rest = list(args.rest)
    if rest[:1] == ["export"]:
        return export(export_parser().parse_args(rest[1:]))
    return serve(serve_parser().parse_args(rest))


def export(args) -> int:
    from blackbox_zo.prefer.export import export_votes

    try:
        c = export_votes(args.run, args.out, force=args.force)
    except FileNotFoundError as e:
        raise ConfigError(str(e)) from e
    print(f"wrote {c['written']} preference pairs to {args.out} (prompt/chosen/rejected); "
          f"skipped {c['tie']} ties and {c['both_bad']} both-bad votes, which name no winner")
    return 0


def serve(args) -> int:
    from blackbox_zo.prefer.config import load_prefer_config
    from blackbox_zo.prefer.security import check_bind, is_loopback

    try:
        check_bind(args.host, args.token)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port must be in 1..65535, got {args.port}")
    cfg = load_prefer_config(args.config)  # every input is checked before torch, the model or the server load
    import uvicorn

    from blackbox_zo.prefer.app import create_app
    from blackbox_zo.prefer.session import PreferSession
    from blackbox_zo.prefer.winrate import load_judge
    from blackbox_zo.setup.assembly import load_tuned
    from blackbox_zo.setup.lock import RunLock

    run_dir = Path(args.output or cfg.output)
    judge = load_judge(cfg.winrate.judge, cfg.winrate.args) if cfg.winrate else None
    RunLock(run_dir).acquire()  # one server per run folder, held until this process exits (however it exits)
    print(f"loading model {cfg.model.name!r} …", flush=True)
    loaded = load_tuned(cfg)  # reads only cfg.model and cfg.space
    session = PreferSession(cfg, loaded.lm, loaded.space, run_dir, judge=judge, log=print)
    print(f"run directory {run_dir}: {session.at.step_count} steps already taken (weights replayed from the trajectory)")
    session.start()
    hosts = ("127.0.0.1", "localhost", "::1") if is_loopback(args.host) else ("*",)
    app = create_app(session, token=args.token, hosts=hosts)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{shown}:{args.port}/" + (f"?token={args.token}" if args.token else "")
    print(f"open {url} in a browser (Ctrl-C stops; votes and steps are saved as they happen)", flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        session.close(wait=False)
    if session.busy:  # a step is being generated: leave now rather than tear torch down under the worker
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # votes are committed and the trajectory fsynced; unfinished SQLite writes roll back
    return 0


class BothHelp(argparse.Action):
    """`blackbox-zo prefer -h`: the help of both forms."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(serve_parser().format_help() + "\n" + export_parser().format_help())
        parser.exit()


def register(sub) -> None:
    """Add `prefer` to the main command's subparsers (it parses its own arguments)."""
    c = sub.add_parser("prefer", add_help=False, help="web page where people vote; votes tune the model "
                       "(`prefer export RUN --out F` writes them as DPO JSONL)")
    c.add_argument("-h", "--help", action=BothHelp, nargs=0)
    c.add_argument("rest", nargs=argparse.REMAINDER)
    c.set_defaults(fn=cmd_prefer)
