"""The ``careplan`` command: serve, worker, migrate, reindex, openapi, load-protocol, replay,
clients, keys."""

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from service.settings import get_settings

if TYPE_CHECKING:
    from service.store.reindex import ReindexReport
    from service.usecases.authorization import Authorization
    from service.usecases.replay import Outcome, ReplayedDecision

OPENAPI_PATH = Path("openapi/openapi.json")


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.main import check_auth_settings, check_signing_keys, prepare_database
    from service.observability import configure_logging
    from service.server import BoundedHttpProtocol
    from service.usecases.credentials import DatabaseKeyStore

    if args.host:
        # The app decides whether tokens are needed by the address it is bound to
        # (CAREPLAN_AUTH=auto; an open CDS Hooks service is refused off loopback): it reads that
        # from its settings, in every worker process.
        os.environ["CAREPLAN_HOST"] = args.host
        get_settings.cache_clear()
    settings = get_settings()
    configure_logging(settings.log_level)
    check_auth_settings(settings)  # CAREPLAN_AUTH=off off loopback ends here, exit code 2
    # Fail fast, before uvicorn starts: a wrong URL, a database that stays down through the
    # bounded retries or a schema behind the code ends here with one line and exit code 2
    # (main() prints the StartupError). With CAREPLAN_MIGRATE_ON_START this also migrates,
    # once, before any worker starts. The lifespan checks again (the database may go away in
    # between); uvicorn then exits with code 3.
    engine = prepare_database(settings)
    try:
        check_signing_keys(DatabaseKeyStore(engine, settings.auth_key_encryption_key))
    finally:
        engine.dispose()
    uvicorn.run(
        "service.main:create_app",
        factory=True,
        host=settings.host,
        port=args.port or settings.port,
        workers=args.workers or settings.workers,
        timeout_graceful_shutdown=settings.graceful_shutdown_seconds,
        # Idle connections and slow request heads closed (service/server.py); slow bodies and
        # requests beyond CAREPLAN_MAX_CONCURRENT_REQUESTS answered by the app (api/limits.py).
        http=BoundedHttpProtocol,
        timeout_keep_alive=settings.keep_alive_seconds,
        proxy_headers=True,
        log_level=settings.log_level.lower(),
        # service.observability logs JSON access lines by route template; uvicorn's own
        # access log would print raw paths with patient ids.
        log_config=None,
        access_log=False,
    )
    return 0


def _worker(_args: argparse.Namespace) -> int:
    import signal

    from service.main import prepare_database
    from service.notify.worker import DeliveryWorker
    from service.observability import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level)
    engine = prepare_database(settings)
    worker = DeliveryWorker(engine, settings)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: worker.request_stop())
    try:
        worker.run_forever()
    finally:
        engine.dispose()
    return 0


def _migrate(_args: argparse.Namespace) -> int:
    from service.main import check_schema, connect_database
    from service.observability import configure_logging
    from service.store import migrations

    settings = get_settings()
    configure_logging(settings.log_level)
    engine = connect_database(settings)
    try:
        report = check_schema(engine, migrate=True)
        print(f"database at revision {migrations.current_revision(engine)}")
        print(_index_line(report))
    finally:
        engine.dispose()
    return 0


def _index_line(report: "ReindexReport | None") -> str:
    if report is None:
        return "search index built by this release's indexer: nothing to do"
    return f"search index: {report.scanned} resources read, {report.rewritten} rewritten"


def _reindex(args: argparse.Namespace) -> int:
    from service.main import prepare_database
    from service.store.reindex import reindex

    if args.batch_size < 1:
        print("careplan reindex: --batch-size must be at least 1", file=sys.stderr)
        return 2
    settings = get_settings().model_copy(update={"migrate_on_start": False})
    engine = prepare_database(settings)
    try:
        print(_index_line(reindex(engine, batch_size=args.batch_size)))
    finally:
        engine.dispose()
    return 0


def openapi_text() -> str:
    from service.main import create_app

    document = create_app().openapi()
    return json.dumps(document, indent=2, sort_keys=False, ensure_ascii=False) + "\n"


def _openapi(args: argparse.Namespace) -> int:
    text = openapi_text()
    target = Path(args.output)
    if args.check:
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            print(f"{target} is out of date: run `careplan openapi`", file=sys.stderr)
            return 1
        print(f"{target} is up to date")
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target}")
    return 0


def _load_protocol(_args: argparse.Namespace) -> int:
    from service.main import prepare_database
    from service.store.runner import Store
    from service.usecases.knowledge import load_definitions, shipped_definitions

    store = Store(prepare_database(get_settings()))
    added = load_definitions(store, shipped_definitions())
    for item in added:
        print(f"added {item}")
    print(f"{len(added)} definitions added")
    return 0


def _replay(args: argparse.Namespace) -> int:
    from service.fhir.errors import FhirError
    from service.main import prepare_database
    from service.store.errors import StoreError
    from service.store.runner import Store
    from service.usecases.replay import replay

    settings = get_settings().model_copy(update={"migrate_on_start": False})
    store = Store(prepare_database(settings))
    try:
        results = replay(store, args.care_plan, args.plan_version)
    except (FhirError, StoreError) as exc:
        print(f"careplan replay: {exc}", file=sys.stderr)
        return 2
    if args.json:
        for item in results:
            print(json.dumps(dataclasses.asdict(item) | {"changed": item.changed}))
    else:
        print(_replay_table(results))
    changed = sum(item.changed for item in results)
    version = results[0].replayed.plan if results else args.plan_version
    print(
        f"{len(results)} decisions replayed against {version}, {changed} differ",
        file=sys.stderr,
    )
    return 1 if changed else 0  # as diff(1): 1 when they differ, 2 for trouble


def _replay_table(results: "list[ReplayedDecision]") -> str:
    """One line a session: stored then replayed decision, rules and retry window."""

    def outcome(o: "Outcome | None") -> list[str]:
        if o is None:
            return ["-", "", ""]
        return [o.code, ",".join(o.rules) + (" +review" if o.review else ""), o.retry_window or ""]

    header = ["session time", "session", "stored", "rules", "retry window"]
    header += ["replayed", "rules", "retry window", ""]
    rows = [header]
    rows += [
        [r.clock, r.session, *outcome(r.stored), *outcome(r.replayed), "CHANGED" * r.changed]
        for r in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _authorization() -> "Authorization":
    """The built-in authorization server over the configured database (not migrated here)."""
    from service.main import check_auth_settings, prepare_database
    from service.usecases.authorization import Authorization

    settings = get_settings().model_copy(update={"migrate_on_start": False})
    policy, issuers = check_auth_settings(settings)
    return Authorization(
        prepare_database(settings),
        policy,
        issuers=issuers,
        token_lifetime=settings.auth_token_lifetime_seconds,
        key_encryption_key=settings.auth_key_encryption_key,
    )


def _clients_add(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from service.auth.clients import ClientRegistrationError, new_client

    jwks = None
    if args.jwks_file:
        try:
            jwks = json.loads(Path(args.jwks_file).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            print(f"careplan clients add: cannot read {args.jwks_file}: {error}", file=sys.stderr)
            return 2
        if not isinstance(jwks, dict):
            print("careplan clients add: the JWKS file must hold a JSON object", file=sys.stderr)
            return 2
    authorization = _authorization()
    try:
        client = new_client(
            args.client_id,
            args.scope,
            datetime.now(UTC),
            jwks=jwks,
            jwks_url=args.jwks_url,
        )
        authorization.clients.add(client)
    except ClientRegistrationError as error:
        print(f"careplan clients add: {error}", file=sys.stderr)
        return 2
    print(f"registered {client.client_id}: {client.allowed_scopes}")
    return 0


def _clients_list(_args: argparse.Namespace) -> int:
    for client in _authorization().clients.list_clients():
        inline = client.jwks or {}
        keys = client.jwks_url or f"{len(inline.get('keys', []))} key(s) inline"
        created = client.created.strftime("%Y-%m-%dT%H:%M:%SZ")
        print(f"{client.client_id}\t{client.allowed_scopes}\t{keys}\t{created}")
    return 0


def _clients_remove(args: argparse.Namespace) -> int:
    if not _authorization().clients.remove(args.client_id):
        print(f"careplan clients remove: no client {args.client_id!r}", file=sys.stderr)
        return 2
    print(f"removed {args.client_id}: its tokens are refused from now on")
    return 0


def _keys_rotate(_args: argparse.Namespace) -> int:
    keys = _authorization().keys
    now = time.time()
    new = keys.rotate(now)
    retired = keys.prune(now)
    print(f"new signing key {new.kid}; older keys verify until their tokens have expired")
    for kid in retired:
        print(f"retired {kid}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="careplan", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.set_defaults(func=_serve)
    commands.add_parser(
        "worker", help="deliver subscription notifications (without serving HTTP)"
    ).set_defaults(func=_worker)
    commands.add_parser(
        "migrate", help="apply database migrations (and reindex if the indexer changed)"
    ).set_defaults(func=_migrate)
    reindex = commands.add_parser(
        "reindex", help="compare every resource's search index rows and rewrite those that differ"
    )
    reindex.add_argument("--batch-size", type=int, default=500, help="resources per transaction")
    reindex.set_defaults(func=_reindex)
    openapi = commands.add_parser("openapi", help="write or check openapi/openapi.json")
    openapi.add_argument("--check", action="store_true", help="fail if the file is out of date")
    openapi.add_argument("--output", default=str(OPENAPI_PATH))
    openapi.set_defaults(func=_openapi)
    commands.add_parser(
        "load-protocol", help="load the shipped protocol definitions (idempotent)"
    ).set_defaults(func=_load_protocol)
    replay = commands.add_parser(
        "replay",
        help="replay a CarePlan's stored sessions and evaluations against a PlanDefinition "
        "version; exit 1 when decisions differ, 0 when none do, 2 on errors",
    )
    replay.add_argument("--care-plan", required=True, help="CarePlan id")
    replay.add_argument("--plan-version", help="PlanDefinition version (default: the plan's own)")
    replay.add_argument("--json", action="store_true", help="one JSON object per line")
    replay.set_defaults(func=_replay)
    clients = commands.add_parser(
        "clients", help="clients of the built-in authorization server"
    ).add_subparsers(dest="action", required=True)
    add = clients.add_parser("add", help="register a client (SMART Backend Services)")
    add.add_argument("--client-id", required=True)
    keys_from = add.add_mutually_exclusive_group(required=True)
    keys_from.add_argument("--jwks-file", help="the client's public keys (a JWKS file)")
    keys_from.add_argument("--jwks-url", help="where the client publishes its keys (https)")
    add.add_argument("--scope", required=True, help='the scopes it may get, e.g. "system/*.rs"')
    add.set_defaults(func=_clients_add)
    clients.add_parser("list", help="the registered clients").set_defaults(func=_clients_list)
    remove = clients.add_parser("remove", help="remove a client; its tokens stop working")
    remove.add_argument("client_id")
    remove.set_defaults(func=_clients_remove)
    keys = commands.add_parser("keys", help="the built-in server's signing keys").add_subparsers(
        dest="action", required=True
    )
    keys.add_parser(
        "rotate", help="new signing key; the old one verifies until its tokens expire"
    ).set_defaults(func=_keys_rotate)
    return parser


def _settings_problem(exc: ValidationError) -> str:
    return "; ".join(
        f"CAREPLAN_{'_'.join(str(part) for part in error['loc']).upper()}: {error['msg']}"
        for error in exc.errors()
    )


def main(argv: list[str] | None = None) -> int:
    """Run one command. Start-up problems end with one line on stderr and exit code 2."""
    args = build_parser().parse_args(argv)
    from service.main import StartupError

    try:
        return int(args.func(args))
    except StartupError as exc:
        print(f"careplan {args.command}: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        if exc.title != "Settings":
            raise
        print(
            f"careplan {args.command}: invalid configuration: {_settings_problem(exc)}",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
