"""``dorc store``: the local holding store that persists between local runs."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from ..errors import DorcError
from .options import ConfigRepo

store_app = typer.Typer(help="The local holding store that persists between local runs.", no_args_is_help=True)


@store_app.command("ls")
def store_ls(
    prefix: str = typer.Option("", "--prefix", help="Only keys (or s3://BUCKET/KEY) starting with this."),
    config_repo: Optional[str] = ConfigRepo,
):
    """What the local holding store holds (bucket, key, size)."""
    from rich.markup import escape

    from .. import local_aws
    from ..render import console

    out = console()
    items = local_aws.store_list(prefix, config_repo=config_repo)
    for bucket, key, size in items:
        out.print(f"{escape(f's3://{bucket}/{key}')}  [dim]{size:,} bytes[/]")
    if not items:
        out.print(f"[dim]the local store holds nothing under {escape(prefix)}[/]" if prefix else "[dim]the local store is empty[/]")


@store_app.command("cat")
def store_cat(
    url: str = typer.Argument(..., help="s3://BUCKET/KEY"),
    config_repo: Optional[str] = ConfigRepo,
):
    """Write one stored object's bytes to stdout."""
    from .. import local_aws

    body = local_aws.store_read(url, config_repo=config_repo)
    sys.stdout.buffer.write(body)
    sys.stdout.flush()


@store_app.command("rm")
def store_rm(
    url: str = typer.Argument(..., help="s3://BUCKET/KEY"),
    config_repo: Optional[str] = ConfigRepo,
):
    """Delete one stored object (through the local AWS server, as a handler's delete would)."""
    from rich.markup import escape

    from .. import local_aws
    from ..render import console

    local_aws.store_remove(url, config_repo=config_repo)
    console().print(f"deleted {escape(url)} from the local store")


@store_app.command("check")
def store_check(config_repo: Optional[str] = ConfigRepo):
    """Check the local store on disk: exit 0 sound, 1 damaged (each problem named)."""
    from rich.markup import escape

    from .. import local_aws
    from ..render import console

    out = console()
    problems = local_aws.store_check(config_repo=config_repo)
    if not problems:
        out.print("the local store is sound")
        return
    out.print(f"[red]the local store is damaged[/] ({len(problems)} problem(s)):")
    for p in problems:
        out.print(f"  {escape(p)}")
    out.print("  fix: dorc store repair (rebuilds each bucket's index from its object files; moves anything "
              "that does not belong to .dorc/local-aws/lost+found/)")
    raise typer.Exit(1)


@store_app.command("repair")
def store_repair(config_repo: Optional[str] = ConfigRepo):
    """Rebuild the local store's indexes from its object files; nothing is deleted."""
    from rich.markup import escape

    from .. import local_aws
    from ..render import console

    out = console()
    done = local_aws.store_repair(config_repo=config_repo)
    for line in done:
        out.print(escape(line))
    left = local_aws.store_check(config_repo=config_repo)
    if left:
        for p in left:
            out.print(f"[red]still wrong:[/] {escape(p)}")
        raise typer.Exit(1)
    out.print("the local store is sound" + ("" if done else " (nothing to repair)"))


@store_app.command("clear")
def store_clear(
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
    config_repo: Optional[str] = ConfigRepo,
):
    """Delete everything local runs stored (the next processed run will need a raw run first)."""
    from .. import api
    from ..project import find_project
    from ..render import console

    project = find_project(config_repo)
    n = len(api.store_objects(project=project))
    if n and not yes:
        if not sys.stdin.isatty():
            raise DorcError(f"the local store holds {n} object(s); refusing to delete them without --yes")
        typer.confirm(f"Delete {n} object(s) from the local store {project.local_aws_dir}?", abort=True)
    api.clear_store(project=project)
    console().print(f"cleared the local store ({n} object(s) deleted)")


@store_app.command("put")
def store_put(
    url: str = typer.Argument(..., help="Where: s3://BUCKET/KEY (e.g. the holding store, s3://<project>-holding-local/inbox/day.csv)."),
    file: str = typer.Argument(..., help="The file to store."),
    no_trigger: bool = typer.Option(False, "--no-trigger", help="Only store it: start no pipeline."),
    localstack: bool = typer.Option(False, "--localstack", help="Put it into LocalStack's bucket: the deployed rules fire the deployed state machines."),
    env: Optional[str] = typer.Option(None, "--env", help="Environment whose triggers (and names) apply (default: local, or localstack)."),
    endpoint: Optional[str] = typer.Option(None, "--endpoint", help="LocalStack URL (default $AWS_ENDPOINT_URL, $LOCALSTACK_HOST or http://localhost:4566)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No handler logs, only the summaries."),
    config_repo: Optional[str] = ConfigRepo,
):
    """Store a file, then start every pipeline layer whose S3 trigger matches it (bucket and key
    prefix), with S3's "Object Created" event, as EventBridge would. Exit 0 all succeeded (or none
    started), 1 one failed."""
    from rich.markup import escape

    from .. import api
    from ..project import find_project
    from ..render import TerminalObserver, console, summary
    from ..result import RunCancelled
    from ..triggers import APPEAR_WITHIN

    if endpoint is not None and not localstack:
        raise DorcError("--endpoint only applies with --localstack", hint="add --localstack, or drop --endpoint")
    project = find_project(config_repo)
    target = "localstack" if localstack else "local"
    out = console()
    stored = api.put_object(url, file, target=target, env=env, endpoint=endpoint, project=project)
    where = f"LocalStack at {stored.endpoint}" if localstack else "the local store"
    out.print(f"stored {escape(stored.url)} in {where}  [dim]{stored.size:,} bytes · etag {stored.etag}[/]")
    for skipped in stored.skipped:
        out.print(f"[yellow]warning:[/] not checked for S3 triggers: {escape(skipped)}")
    if no_trigger:
        return
    for f in stored.not_deployed:
        out.print(f"[yellow]warning:[/] S3 trigger {escape(f.trigger)} of {f.key} matches, but its rule "
                  f"{f.rule_name} is not deployed to LocalStack: nothing starts it "
                  f"(dorc deploy {f.instance} {f.layer} --target localstack)")
    if not stored.firings:
        out.print(f"no pipeline is triggered by {escape(stored.url)}")
        if stored.s3_triggers:
            out.print(f"[dim]S3 triggers in {stored.env}: " + escape("; ".join(stored.s3_triggers)) + "[/]")
        return
    failed = 0
    if localstack:
        for f in stored.firings:
            out.print(f"[bold]{f.key}[/]: rule {f.rule_name} (S3 trigger {escape(f.trigger)}) fired; waiting for its execution")
        started = api.wait_for_executions(stored, project=project, observer=TerminalObserver(out, show_logs=not quiet))
        for f, result in started:
            if result is None:
                failed += 1
                out.print(f"[red]no execution of {f.key} started[/] within {APPEAR_WITHIN:.0f} s of the put "
                          f"(rule {f.rule_name}); check `dorc localstack logs`")
                continue
            out.print(f"[bold]{f.key}[/]: execution {result.execution_arn}")
            summary(out, result, project=project)
            failed += not result.succeeded
    else:
        for f in stored.firings:
            out.print(f"[bold]{f.key}[/]: S3 trigger {escape(f.trigger)} matches; starting it with the Object Created event")
            observer = TerminalObserver(out, show_logs=not quiet)
            try:
                result, = api.fire([f], project=project, env=stored.env, observer=observer)
            except RunCancelled as exc:  # Ctrl-C: as ``dorc run`` does, what ran is shown and recorded
                observer.interrupted()
                summary(out, exc.result, project=project)
                sys.stderr.write("interrupted\n")
                raise typer.Exit(130) from None
            summary(out, result, project=project)
            failed += not result.succeeded
    runs = len(stored.firings)
    out.print(f"{runs - failed} of {runs} triggered run(s) succeeded" if failed else f"{runs} triggered run(s) succeeded")
    raise typer.Exit(1 if failed else 0)
