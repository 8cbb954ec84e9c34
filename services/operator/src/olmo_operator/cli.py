"""``olmo-operator``: run the operator, or print/write the generated CRD.

    olmo-operator run [--namespace NS ... | --all-namespaces] [--liveness-port 8080]
                      [--metrics-port 9090] [--peering NAME | --standalone] [--verbose | --debug]
    olmo-operator crd                      # print the CRD YAML
    olmo-operator crd --write [REPO_ROOT]  # write k8s/crd/olmojobs.yaml and helm/crds/olmojobs.yaml
    olmo-operator crd --check [REPO_ROOT]  # exit 1 when those files differ from the generated text
    olmo-operator report NAME [-n NS] [--status-file FILE|-] [--png PATH]
                                           # the goodput ledger as a table (olmo_operator.report)

``run`` without namespaces watches the ones in ``$OLMO_OPERATOR_NAMESPACES`` (comma-separated),
else all namespaces. Exit codes: 0 ok, 1 CRD files out of date or the report's job unreadable,
2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from olmo_operator import contract as c
from olmo_operator.crd import CRD_PATHS, crd_yaml

PROG = "olmo-operator"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator (kopf)")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace", "-n", action="append", default=[], metavar="NS", help="watch NS (repeat)"
    )
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch all namespaces")
    run.add_argument("--liveness-port", type=int, default=8080, help="/healthz port (0: none)")
    run.add_argument("--metrics-port", type=int, default=9090, help="/metrics port (0: none)")
    peering = run.add_mutually_exclusive_group()
    peering.add_argument(
        "--peering",
        metavar="NAME",
        help="KopfPeering object that keeps a single replica active (needs kopf's peering CRDs)",
    )
    peering.add_argument("--standalone", action="store_true", help="run without peering")
    verbosity = run.add_mutually_exclusive_group()
    verbosity.add_argument("--verbose", "-v", action="store_true")
    verbosity.add_argument("--debug", "-d", action="store_true")
    run.set_defaults(func=_cmd_run)

    crd = sub.add_parser("crd", help="print, write or check the generated OLMoJob CRD")
    action = crd.add_mutually_exclusive_group()
    action.add_argument(
        "--write",
        nargs="?",
        const="",
        metavar="REPO_ROOT",
        help=f"write {' and '.join(CRD_PATHS)} (root: found from the package or the cwd)",
    )
    action.add_argument(
        "--check", nargs="?", const="", metavar="REPO_ROOT", help="fail when those files drift"
    )
    crd.set_defaults(func=_cmd_crd)

    report = sub.add_parser(
        "report", help="print an OLMoJob's goodput ledger (and draw its timeline with --png)"
    )
    report.add_argument("name", nargs="?", metavar="NAME", help="the OLMoJob")
    report.add_argument(
        "--namespace", "-n", metavar="NS", help="its namespace (default: the context's)"
    )
    report.add_argument(
        "--status-file",
        metavar="FILE",
        help="read the OLMoJob (or only its status), YAML or JSON, from FILE (-: stdin) "
        "instead of the cluster",
    )
    report.add_argument(
        "--png", metavar="PATH", help="also write the timeline per attempt (needs matplotlib)"
    )
    report.set_defaults(func=_cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2


class UsageError(Exception):
    pass


# --------------------------------------------------------------------------------------------
# crd


def find_repo_root(start: Path | None = None) -> Path:
    """The repository root: above this package in a source checkout, else above the cwd."""
    candidates = [Path(__file__).resolve().parent, (start or Path.cwd()).resolve()]
    for base in candidates:
        for folder in (base, *base.parents):
            if (folder / "k8s").is_dir() and (folder / "helm").is_dir():
                return folder
    raise UsageError("cannot find the repository root (a folder with k8s/ and helm/): pass it")


def _cmd_crd(args: argparse.Namespace) -> int:
    text = crd_yaml()
    if args.write is None and args.check is None:
        sys.stdout.write(text)
        return 0
    given = args.write if args.write is not None else args.check
    root = Path(given) if given else find_repo_root()
    if not root.is_dir():
        raise UsageError(f"{root} is not a directory")
    stale = []
    for rel in CRD_PATHS:
        path = root / rel
        if args.write is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
        elif not path.is_file() or path.read_text() != text:
            stale.append(str(path))
    if stale:
        print(
            f"{PROG}: out of date: {', '.join(stale)} (run `olmo-operator crd --write`)",
            file=sys.stderr,
        )
        return 1
    return 0


# --------------------------------------------------------------------------------------------
# report


def _cmd_report(args: argparse.Namespace) -> int:
    from olmo_operator import report

    if not args.name and args.status_file is None:
        raise UsageError("report: give the OLMoJob's NAME, or --status-file FILE")
    try:
        text = report.run(args.name, args.namespace, args.status_file, args.png)
    except report.ReportError as e:
        print(f"{PROG} report: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0


# --------------------------------------------------------------------------------------------
# run


def _cmd_run(args: argparse.Namespace) -> int:
    import kopf

    import olmo_operator.handlers  # noqa: F401  (registers the handlers)
    from olmo_operator import metrics

    for port, flag in (
        (args.liveness_port, "--liveness-port"),
        (args.metrics_port, "--metrics-port"),
    ):
        if not 0 <= port <= 65535:
            raise UsageError(f"{flag} must be a port number, got {port}")
    _check_settings(os.environ)
    namespaces = list(args.namespace)
    if not namespaces and not args.all_namespaces:
        namespaces = [
            n.strip() for n in os.environ.get(c.ENV_NAMESPACES, "").split(",") if n.strip()
        ]
    kopf.configure(verbose=args.verbose, debug=args.debug)
    if args.metrics_port:
        metrics.serve(args.metrics_port)
    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=(
            f"http://0.0.0.0:{args.liveness_port}/healthz" if args.liveness_port else None
        ),
        standalone=True if args.standalone else None,
        peering_name=args.peering,
    )
    return 0


def _check_settings(environ: Mapping[str, str]) -> None:
    """Refuse to start on a malformed policy or switch (exit 2 with the reason) rather than run
    with fewer restrictions than the installer asked for."""
    from olmo_operator.policy import Policy
    from olmo_operator.resources.network_policy import enabled_from_env

    try:
        Policy.from_env(environ)
        enabled_from_env(environ)
    except ValueError as e:
        raise UsageError(str(e)) from None


if __name__ == "__main__":
    raise SystemExit(main())
