"""The qfstack command line: parse, call the library, show the result.

Data goes to stdout, progress and errors to stderr. Exit codes: 0 success,
1 failure, 2 usage or invalid configuration, 3 not ready before the
timeout, 130 interrupted.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from qfstack import __version__
from qfstack.backup import backup as stack_backup
from qfstack.backup import read_backup
from qfstack.backup import restore as stack_restore
from qfstack.backup import upgrade as stack_upgrade
from qfstack.config import Config, load_config
from qfstack.doctor import DoctorReport, diagnose
from qfstack.doctor import wait as stack_wait
from qfstack.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    ConfigError,
    Finding,
    QfstackError,
)
from qfstack.files import directory_lock
from qfstack.lifecycle import (
    UpResult,
    compose_config,
    guard_new_keys,
    known_services,
    render_stack,
)
from qfstack.lifecycle import down as stack_down
from qfstack.lifecycle import restart as stack_restart
from qfstack.lifecycle import status as stack_status
from qfstack.lifecycle import up as stack_up
from qfstack.oidc import HttpSettings, parse_resolve
from qfstack.provision import Options as ProvisionOptions
from qfstack.provision import ProvisionReport, SignInLink, provision_setup
from qfstack.provision import sign_in_link as provision_sign_in_link
from qfstack.readiness import CheckResult
from qfstack.secrets import plan_secrets
from qfstack.setup_env import init_setup_env, init_values, read_existing
from qfstack.stack import Stack

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def _console() -> Console:
    """stderr: styled only on a terminal without NO_COLOR."""
    return _make_console(stderr=True)


def _make_console(*, stderr: bool) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    plain = "NO_COLOR" in os.environ or not stream.isatty()
    # No colour system at all means no escape codes, bold and italic included.
    return Console(
        stderr=stderr,
        color_system=None if plain else "auto",
        highlight=False,
        soft_wrap=True,
    )


@dataclass
class Context:
    directory: Path
    verbose: int
    settings: HttpSettings
    err: Console

    def config(self) -> Config:
        config = load_config(self.directory)
        show_findings(self.err, [f for f in config.findings if f.level != "info"])
        return config


pass_context = click.make_pass_decorator(Context)


class _Group(click.Group):
    """Turns qfstack errors into a message and their exit code."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except QfstackError as exc:
            verbose = isinstance(ctx.obj, Context) and ctx.obj.verbose > 0
            _report(exc, verbose)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            # A bug of qfstack's: one line, and the traceback only with -v.
            verbose = isinstance(ctx.obj, Context) and ctx.obj.verbose > 0
            wrapped = QfstackError(
                f"unexpected {type(exc).__name__}: {exc}",
                details=[
                    "This is a bug in qfstack; run again with -v for the "
                    "traceback and report it."
                ],
            )
            wrapped.__cause__ = exc
            _report(wrapped, verbose)
            ctx.exit(EXIT_FAILED)


def timeout_option(text: str) -> Callable[[F], F]:
    """The --timeout option every waiting command shares."""
    return click.option(
        "--timeout",
        type=click.FloatRange(min=1),
        default=300.0,
        show_default=True,
        help=text,
    )


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="qfstack")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=".",
    envvar="QFSTACK_DIR",
    show_envvar=True,
    help="Stack directory holding setup.env; files go to DIR/artifacts/.",
)
@click.option("-v", "--verbose", count=True, help="-v: info log, -vv: debug log.")
@click.option(
    "--ca-bundle",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="QFSTACK_CA_BUNDLE_FILE",
    help="PEM file of CAs to trust for the identity provider "
    "(default: the system store, or SSL_CERT_FILE).",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="Do not verify the identity provider's TLS certificate.",
)
@click.option(
    "--resolve",
    multiple=True,
    metavar="HOST:PORT:ADDRESS",
    envvar="QFSTACK_RESOLVE",
    show_envvar=True,
    help="Connect to ADDRESS for HOST:PORT (like curl --resolve); the "
    "certificate is still checked against HOST.",
)
@click.pass_context
def cli(
    ctx: click.Context,
    directory: Path,
    verbose: int,
    ca_bundle: Path | None,
    insecure: bool,
    resolve: Sequence[str],
) -> None:
    """Deploy and operate a self-hosted QuFabric stack with PocketID."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    err = _console()
    if insecure:
        err.print(
            "[bold red]WARNING:[/] --insecure: the identity provider's TLS "
            "certificate is NOT verified; anyone on the path can impersonate "
            "it. Use --ca-bundle instead."
        )
    items = [part for item in resolve for part in item.split()]
    settings = HttpSettings(
        ca_bundle=ca_bundle, insecure=insecure, resolve=parse_resolve(items)
    )
    ctx.obj = Context(directory, verbose, settings, err)
    if ctx.invoked_subcommand in CHANGING_COMMANDS and not ctx.resilient_parsing:
        ctx.with_resource(directory_lock(directory))


# Commands that change files or containers take the stack directory's lock.
CHANGING_COMMANDS = frozenset(
    {
        "init",
        "render",
        "up",
        "down",
        "restart",
        "upgrade",
        "backup",
        "restore",
        "pocketid",
    }
)


@cli.command()
@timeout_option("Seconds to wait for readiness.")
@pass_context
def up(obj: Context, timeout: float) -> None:
    """Render the configuration, start the stack and wait until it is healthy."""
    config = obj.config()
    progress = _Progress(obj.err)
    obj.err.print(
        f"Starting project [bold]{config.project}[/] (timeout {timeout:.0f}s)"
    )
    result = stack_up(
        config, obj.settings, timeout=timeout, on_progress=progress.update
    )
    progress.done()
    for check in result.checks:
        obj.err.print(f"  [green]ok[/] {escape(check.name)}: {escape(check.detail)}")
        for line in check.evidence:
            obj.err.print(f"     [yellow]warn[/] {escape(line)}")
    _show_changes(obj.err, result)
    for note in result.notes:
        obj.err.print(f"  [yellow]note[/]: {escape(note)}")
    obj.err.print(
        f"[green]Stack {result.project} is healthy[/] after {result.seconds:.1f}s."
    )
    if result.sign_in is not None:
        _show_sign_in(obj.err, result.sign_in)


def _show_changes(err: Console, result: UpResult) -> None:
    if result.generated:
        err.print(
            f"  generated {', '.join(result.generated)}, kept in secrets.env "
            "from now on (back it up)"
        )
    if not result.changed:
        err.print("No change: the files and every container were already up to date.")
        return
    if result.pocketid is not None:
        for line in result.pocketid.lines():
            err.print(f"  PocketID: {escape(line)}")
    changed = [p.name for p in result.rendered.changed]
    if changed:
        err.print(f"  rendered: {', '.join(changed)}")
    if result.created:
        err.print(f"  created: {', '.join(result.created)}")
    if result.recreated:
        err.print(f"  recreated: {', '.join(result.recreated)}")
    if result.started:
        err.print(f"  started (was stopped): {', '.join(result.started)}")


def _show_sign_in(err: Console, link: SignInLink) -> None:
    """How `up` shows the first admin's link: once, on stderr with its
    progress, never logged (`pocketid sign-in-link` prints its own on stdout)."""
    err.print(
        f"Sign in to PocketID as [bold]{escape(link.user)}[/] and add a passkey "
        "with this one-time link (valid for 1 hour, shown only now):"
    )
    err.print("  " + link.reveal(), markup=False, highlight=False)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_context
def status(obj: Context, as_json: bool) -> None:
    """Show the services, their health and the identity provider's readiness."""
    config = obj.config()
    report = stack_status(config, obj.settings)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        _print_status(report.as_dict())
    if not report.healthy:
        sys.exit(EXIT_FAILED)


@cli.command()
@click.option(
    "-v",
    "--volumes",
    is_flag=True,
    help="Also remove the volumes (management data, certificates); asks first.",
)
@click.option("--yes", is_flag=True, help="Do not ask before removing volumes.")
@pass_context
def down(obj: Context, volumes: bool, yes: bool) -> None:
    """Stop and remove the containers; volumes are kept unless --volumes."""
    config = obj.config()
    if volumes and not yes:
        obj.err.print(
            "This removes the volumes of project "
            f"[bold]{config.project}[/]: management's database, signal's "
            "state, certificates"
            + (" and PocketID's users and keys" if config.bundled_pocketid else "")
            + ". This cannot be undone."
        )
        if not sys.stdin.isatty():
            raise ConfigError(
                "refusing to remove volumes without confirmation",
                [
                    Finding(
                        "error",
                        "--volumes",
                        "needs a confirmation.",
                        "add --yes to confirm non-interactively.",
                    )
                ],
            )
        click.confirm("Remove them?", abort=True, err=True)
    stack_down(config, volumes=volumes)
    obj.err.print(
        f"Stack {config.project} is down"
        + (" and its volumes are removed." if volumes else "; volumes are kept.")
    )


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@pass_context
def validate(obj: Context, as_json: bool) -> None:
    """Check setup.env and report every problem at once (exit 2 on errors)."""
    findings: list[Finding] = []
    try:
        config = load_config(obj.directory)
        findings = list(config.findings)
        plan_secrets(config)  # the datastore key must not change; writes nothing
    except ConfigError as exc:
        findings += exc.findings
    errors = sum(1 for f in findings if f.level == "error")
    warnings = sum(1 for f in findings if f.level == "warning")
    if as_json:
        items = [dataclasses.asdict(f) for f in findings]
        click.echo(json.dumps({"valid": not errors, "findings": items}, indent=2))
    else:
        show_findings(obj.err, findings)
    if errors:
        obj.err.print(
            f"[red]setup.env has {errors} error(s)[/] and {warnings} warning(s)."
        )
        sys.exit(EXIT_USAGE)
    obj.err.print(f"[green]setup.env is valid[/] ({warnings} warning(s)).")


@cli.command()
@pass_context
def render(obj: Context) -> None:
    """Write artifacts/ from setup.env and the identity provider's discovery."""
    config = obj.config()
    rendered = render_stack(config, obj.settings)
    for path in rendered.paths:
        click.echo(str(path))
    obj.err.print(f"{len(rendered.changed)} of {len(rendered.paths)} file(s) changed.")


@cli.command("config")
@click.option("--show-secrets", is_flag=True, help="Print secrets unmasked.")
@pass_context
def config_command(obj: Context, show_secrets: bool) -> None:
    """Print the merged Compose configuration (secrets masked)."""
    config = obj.config()
    text = compose_config(config, show_secrets=show_secrets)
    if show_secrets:
        obj.err.print("[yellow]warning:[/] printing secrets unmasked.")
    click.echo(text, nl=False)


@cli.command()
@click.option("--domain", help="Public host name of the stack (QUFABRIC_DOMAIN).")
@click.option("--pocketid-url", help="Base URL of an existing PocketID (https).")
@click.option("--client-id", help="The OIDC client id PocketID gave QuFabric.")
@click.option(
    "--api-token-file",
    type=click.File("r"),
    help="File (or - for stdin) holding PocketID's API key.",
)
@click.option(
    "--bundled-pocketid",
    is_flag=True,
    help="Run PocketID inside the stack (local and demo stacks).",
)
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="NAME=VALUE",
    help="Set any other setup.env variable (repeatable).",
)
@click.option("--non-interactive", is_flag=True, help="Never prompt.")
@pass_context
def init(
    obj: Context,
    domain: str | None,
    pocketid_url: str | None,
    client_id: str | None,
    api_token_file: TextIO | None,
    bundled_pocketid: bool,
    assignments: Sequence[str],
    non_interactive: bool,
) -> None:
    """Write or update setup.env; secrets are generated once, never replaced."""
    existing = read_existing(obj.directory)
    interactive = not non_interactive and sys.stdin.isatty()
    token = api_token_file.read().strip() if api_token_file else None
    requested = init_values(
        existing,
        domain=domain,
        pocketid_url=pocketid_url,
        client_id=client_id,
        api_token=token,
        bundled=bundled_pocketid or None,
        assignments=assignments,
        prompt=_prompt if interactive else None,
    )
    result = init_setup_env(
        obj.directory, existing, requested, os.environ, guard=guard_new_keys
    )
    show_findings(obj.err, [f for f in result.findings if f.level != "info"])
    if result.backup:
        obj.err.print(f"Kept the previous file as {result.backup.name}.")
    if result.changed:
        obj.err.print(f"Wrote {result.path}: " + ", ".join(result.changed))
    elif not result.backup and existing:
        obj.err.print(f"{result.path} already says that; nothing changed.")
    if result.generated:
        obj.err.print(
            f"Generated {', '.join(result.generated)} once, in "
            f"{result.secrets_path} (back it up; it is never replaced)."
        )


def _prompt(name: str, text: str, secret: bool) -> str:
    return str(click.prompt(text, hide_input=secret, err=True))


@cli.command()
@click.argument("services", nargs=-1)
@click.option("-f", "--follow", is_flag=True, help="Keep streaming new lines.")
@click.option(
    "--tail", default=None, metavar="N", help="Lines from the end of each log."
)
@click.option(
    "--since",
    default=None,
    metavar="T",
    help="Only lines since T (e.g. 10m, or an RFC 3339 time).",
)
@pass_context
def logs(
    obj: Context,
    services: tuple[str, ...],
    follow: bool,
    tail: str | None,
    since: str | None,
) -> None:
    """Stream the services' logs, byte for byte."""
    config = obj.config()
    stack = Stack(config)
    known_services(stack, services)
    if tail is not None and not (tail == "all" or tail.isdigit()):
        raise click.BadParameter(
            "give a number of lines or 'all'.", param_hint="--tail"
        )
    out = sys.stdout.buffer
    for chunk in stack.stream_logs(services, follow=follow, tail=tail, since=since):
        out.write(chunk)
        out.flush()


@cli.command()
@click.argument("services", nargs=-1)
@timeout_option("Seconds to wait for health afterwards.")
@pass_context
def restart(obj: Context, services: tuple[str, ...], timeout: float) -> None:
    """Restart services (all by default) and wait until the stack is healthy."""
    config = obj.config()
    progress = _Progress(obj.err)
    stack_restart(
        config,
        obj.settings,
        list(services),
        timeout=timeout,
        on_progress=progress.update,
    )
    progress.done()
    obj.err.print(
        f"[green]Restarted {', '.join(services) or 'every service'}; "
        "the stack is healthy.[/]"
    )


@cli.command()
@timeout_option("Seconds to wait for health afterwards.")
@pass_context
def upgrade(obj: Context, timeout: float) -> None:
    """Back up, pull the configured tags, recreate and wait until healthy."""
    config = obj.config()
    progress = _Progress(obj.err)
    result = stack_upgrade(
        config, obj.settings, timeout=timeout, on_progress=progress.update
    )
    progress.done()
    obj.err.print(f"Backed up to {result.backup.archive}.")
    changed = sorted(
        ref for ref, image in result.after.items() if result.before.get(ref) != image
    )
    obj.err.print("New images: " + (", ".join(changed) if changed else "none"))
    _show_changes(obj.err, result.up)
    obj.err.print(f"[green]Stack {config.project} is healthy.[/]")


@cli.command()
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Archive to write (default DIR/backups/<project>-<time>.tar.gz).",
)
@pass_context
def backup(obj: Context, output: Path | None) -> None:
    """Archive setup.env, secrets, artifacts and the data volumes."""
    config = obj.config()
    result = stack_backup(config, output)
    click.echo(str(result.archive))
    obj.err.print(
        f"Backed up {', '.join(result.volumes)} and {len(result.files)} "
        f"file(s); services were stopped {result.stopped_seconds:.1f}s. "
        "The archive holds secrets: keep it private."
    )


@cli.command()
@click.argument("archive", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@timeout_option("Seconds to wait for health afterwards.")
@click.option("--yes", is_flag=True, help="Do not ask before replacing data.")
@pass_context
def restore(obj: Context, archive: Path, timeout: float, yes: bool) -> None:
    """Put a backup's files and volumes back, then bring the stack up."""
    manifest = read_backup(archive)
    obj.err.print(
        f"This replaces setup.env, secrets and the volumes "
        f"{', '.join(manifest.get('volumes', []))} in {obj.directory.resolve()} "
        f"with the backup of {manifest.get('created', '?')}."
    )
    if not yes:
        if not sys.stdin.isatty():
            raise ConfigError(
                "refusing to restore without confirmation",
                [
                    Finding(
                        "error",
                        "restore",
                        "needs a confirmation.",
                        "add --yes to confirm non-interactively.",
                    )
                ],
            )
        click.confirm("Replace them?", abort=True, err=True)
    config = stack_restore(obj.directory, archive, load_config)
    progress = _Progress(obj.err)
    result = stack_up(
        config, obj.settings, timeout=timeout, on_progress=progress.update
    )
    progress.done()
    obj.err.print(f"[green]Restored; stack {result.project} is healthy.[/]")


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print a shell completion script; eval its output in your shell's profile."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None
    click.echo(cls(cli, {}, "qfstack", "_QFSTACK_COMPLETE").source())


@cli.group("pocketid")
def pocketid_group() -> None:
    """QuFabric's OIDC client in PocketID, and sign-in links."""


@pocketid_group.command("provision")
@click.option(
    "--api-token-file",
    type=click.File("r"),
    help="File (or - for stdin) holding a PocketID admin's API key (default: "
    "QUFABRIC_IDP_MGMT_EXTRA_API_TOKEN, or the bundled PocketID's static key).",
)
@click.option(
    "--client-id",
    help="Id of the client to update or create (default: QUFABRIC_AUTH_CLIENT_ID; "
    "without one, the client named QuFabric, else a new one).",
)
@click.option(
    "--group",
    help="User group allowed on the client, PocketID 2.x (default: "
    "QFSTACK_POCKETID_GROUP, qufabric-users); created when missing.",
)
@click.option(
    "--user",
    "users",
    multiple=True,
    metavar="NAME",
    help="Add this user (name or e-mail) to the group; repeatable.",
)
@click.option(
    "--open-access",
    is_flag=True,
    help="Let every PocketID user in (2.x: no group restriction).",
)
@click.option("--dry-run", is_flag=True, help="Show the plan; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_context
def pocketid_provision(
    obj: Context,
    api_token_file: TextIO | None,
    client_id: str | None,
    group: str | None,
    users: tuple[str, ...],
    open_access: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Create or update QuFabric's OIDC client in PocketID, as the guide
    describes it, and write its id into setup.env.

    Running it again changes nothing. Exit 0 when the client is (or, with
    --dry-run, would be) as QuFabric needs it.
    """
    if open_access and (users or group):
        raise ConfigError(
            "--open-access contradicts --user and --group",
            [
                Finding(
                    "error",
                    "--open-access",
                    "lets every user in, so a group has nothing to restrict.",
                    "drop --open-access, or drop --user and --group.",
                )
            ],
        )
    token = api_token_file.read().strip() if api_token_file else None
    options = ProvisionOptions(
        api_token=token or None,
        client_id=client_id,
        group=group,
        users=users,
        open_access=open_access,
        dry_run=dry_run,
    )
    report = provision_setup(obj.directory, obj.settings, options)
    show_findings(obj.err, [f for f in report.findings if f.level != "info"])
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        _print_provision(report)
    provisioned = report.provisioned
    if report.backup:
        obj.err.print(f"Kept the previous setup.env as {report.backup.name}.")
    count = len(provisioned.changes) + len(report.setup_env)
    if not report.changed:
        obj.err.print(
            f"[green]Nothing to change:[/] client {escape(provisioned.client_id)} "
            "is as QuFabric needs it."
        )
    elif dry_run:
        obj.err.print(f"Dry run: {count} change(s) planned; nothing was changed.")
    else:
        obj.err.print(
            f"[green]Provisioned[/] client {escape(provisioned.client_id)}: "
            f"{count} change(s)."
        )
    for step in report.next_steps:
        obj.err.print(f"[yellow]Next:[/] {escape(step)}")


def _print_provision(report: ProvisionReport) -> None:
    out = _make_console(stderr=False)
    provisioned = report.provisioned
    verb = "would change" if provisioned.dry_run else "changed"
    version = provisioned.version
    if provisioned.assumed_version:
        version = f"version {version}; assuming {provisioned.assumed_version}"
    out.print(
        f"PocketID {escape(version)}, client {escape(provisioned.client_id or '(new)')}"
    )
    for change in [*provisioned.changes, *report.setup_env]:
        out.print(f"  {verb}: {escape(change.line())}")
    for note in provisioned.notes:
        out.print(f"  note: {escape(note)}")


@pocketid_group.command("sign-in-link")
@click.argument("user", required=False)
@pass_context
def pocketid_sign_in_link(obj: Context, user: str | None) -> None:
    """Print a one-time sign-in link (valid 1 hour) for a user of the bundled
    PocketID; by default its first admin (QFSTACK_POCKETID_ADMIN)."""
    config = obj.config()
    if not config.bundled_pocketid:
        raise ConfigError(
            "sign-in links come from the bundled PocketID",
            [
                Finding(
                    "error",
                    "QFSTACK_BUNDLED_POCKETID",
                    "is false: qfstack does not run this PocketID.",
                    "on the PocketID host run `pocket-id one-time-access-token "
                    "USER`, or use PocketID's admin page (Users -> the user -> "
                    "Login Code).",
                )
            ],
        )
    link = provision_sign_in_link(config, user, obj.settings)
    obj.err.print(
        f"One-time sign-in link for [bold]{escape(link.user)}[/] (valid for 1 "
        "hour): open it and add a passkey."
    )
    # The link is this command's data: stdout, so that LINK=$(...) holds it.
    click.echo(link.reveal())


@cli.command("wait")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=300.0,
    show_default=True,
    help="Seconds to wait before giving up (exit 3).",
)
@click.option(
    "--idp-only",
    is_flag=True,
    help="Wait for the identity provider alone, not for the services.",
)
@pass_context
def wait_command(obj: Context, timeout: float, idp_only: bool) -> None:
    """Wait until the identity provider and the services are ready.

    Exit 0 when ready, 3 at the timeout or at once on a fault that waiting
    cannot heal (a wrong issuer, an untrusted certificate).
    """
    config = obj.config()
    progress = _Progress(obj.err)
    try:
        result = stack_wait(
            config,
            obj.settings,
            timeout=timeout,
            services=not idp_only,
            on_progress=progress.update,
        )
    finally:
        progress.done()
    for check in result.checks:
        obj.err.print(f"  [green]ok[/] {escape(check.name)}: {escape(check.detail)}")
        for line in check.evidence:
            obj.err.print(f"     [yellow]warn[/] {escape(line)}")
    obj.err.print(f"[green]Ready[/] after {result.seconds:.1f}s.")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--no-docker", is_flag=True, help="Skip the Docker engine and port checks."
)
@pass_context
def doctor(obj: Context, as_json: bool, no_docker: bool) -> None:
    """Run every check once: pass, warn or fail, with the evidence and the fix.

    Exit 0 when nothing fails (warnings allowed), 1 when a check fails, 2 when
    the configuration is invalid.
    """
    try:
        config = load_config(obj.directory)
    except ConfigError as exc:
        if not as_json:
            raise
        findings = [
            {"level": f.level, "variable": f.variable, "message": f.message,
             "fix": f.fix}
            for f in exc.findings
        ]  # fmt: skip
        click.echo(json.dumps({"ok": False, "level": "fail", "config": findings}))
        sys.exit(EXIT_USAGE)
    report = diagnose(config, obj.settings, docker=not no_docker)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        _print_doctor(report, verbose=obj.verbose > 0)
    sys.exit(report.exit_code)


_LEVEL_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red"}


def _print_doctor(report: DoctorReport, *, verbose: bool) -> None:
    out = _make_console(stderr=False)
    for verdict in report.verdicts:
        style = _LEVEL_STYLE[verdict.level]
        out.print(
            f"[{style}]{verdict.level.upper():4}[/] {escape(verdict.title)}: "
            f"{escape(verdict.summary)}"
        )
        if verdict.level != "pass" or verbose:
            for line in verdict.evidence:
                out.print(f"       {escape(line)}")
        if verdict.fix and verdict.level != "pass":
            out.print(f"       fix: {escape(verdict.fix)}")
    for note in report.skipped:
        out.print(f"[dim]SKIP[/] {escape(note)}")
    counts = report.counts()
    out.print(
        f"{counts['pass']} passed, {counts['warn']} warning(s), "
        f"{counts['fail']} failed."
    )


def show_findings(err: Console, findings: Sequence[Finding], indent: str = "") -> None:
    for finding in findings:
        style = "red" if finding.level == "error" else "yellow"
        err.print(f"{indent}[{style}]{finding.level}[/]: {escape(str(finding))}")


class _Progress:
    """One updating line on a terminal; nothing otherwise."""

    def __init__(self, err: Console) -> None:
        self.err = err
        self.live = err.is_terminal
        self.shown = False

    def update(self, elapsed: float, results: Sequence[CheckResult]) -> None:
        if not self.live:
            return
        pending = next((r for r in results if not r.ok), None)
        if pending is None:
            return
        text = f"waiting {elapsed:5.1f}s: {pending.name}: {pending.detail}"
        width = max(20, self.err.width - 1)
        self.err.file.write("\r\x1b[2K" + text[:width])
        self.err.file.flush()
        self.shown = True

    def done(self) -> None:
        if self.shown:
            self.err.file.write("\r\x1b[2K")
            self.err.file.flush()


def _print_status(report: dict[str, object]) -> None:
    out = _make_console(stderr=False)
    table = Table(title=f"project {report['project']}")
    for column in ("service", "state", "health", "uptime"):
        table.add_column(column, no_wrap=True)
    table.add_column("ports", overflow="fold")
    services = report["services"]
    assert isinstance(services, list)
    for item in services:
        table.add_row(
            escape(item["service"]),
            escape(item["state"]),
            escape(item["health"]),
            escape(item.get("uptime", "")),
            escape("\n".join(item["ports"])),
        )
    out.print(table)
    idp = report["identity_provider"]
    assert isinstance(idp, dict)
    ready = "ready" if idp["ready"] else "NOT ready"
    out.print(f"identity provider: {ready}: {escape(str(idp['detail']))}")
    urls = report.get("urls")
    if isinstance(urls, dict):
        for name, url in urls.items():
            out.print(f"{name.replace('_', ' ')} URL: {escape(str(url))}")
    out.print(f"healthy: {'yes' if report['healthy'] else 'no'}")


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI, turning qfstack errors into messages and exit codes."""
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = any(a in ("-v", "-vv", "--verbose") for a in args)
    try:
        code = cli.main(args=args, prog_name="qfstack", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except QfstackError as exc:
        # Raised before a command runs, e.g. by an option's parsing.
        _report(exc, verbose)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo(
            "\nInterrupted: files are intact; run `qfstack status` to see "
            "what is running.",
            err=True,
        )
        sys.exit(EXIT_INTERRUPTED)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


def _report(exc: QfstackError, verbose: bool) -> None:
    err = _console()
    if verbose:
        err.print(escape("".join(traceback.format_exception(exc))))
    if isinstance(exc, ConfigError) and len(exc.findings) == 1:
        # One finding says it all; the summary line would only repeat it.
        show_findings(err, exc.findings)
        return
    err.print(f"[bold red]error:[/] {escape(exc.message)}")
    if isinstance(exc, ConfigError):
        show_findings(err, exc.findings, indent="  ")
        return
    for line in exc.details:
        err.print(f"  {escape(line)}")
