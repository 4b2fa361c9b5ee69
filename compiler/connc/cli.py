"""The command line: one click group. Commands are thin: parse options, call one function,
exit with a code. The entry point that maps errors to exit codes is `connc.__main__`.

Imports of the heavy modules happen inside each command, so each command pays only for what
it uses. `connc render` (the command every pipeline start waits on) usually does not come
through here at all: see `connc.__main__`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from connc.errors import ExitCode

F = TypeVar("F", bound=Callable[..., Any])


def timeout_option(seconds: float, what: str) -> Callable[[F], F]:
    """--timeout: one deadline for the whole run's sops processes (connc.process.Deadline)."""
    return click.option("--timeout", default=seconds, show_default=True, metavar="SECONDS",
                        type=click.FloatRange(1, 86400),
                        help=f"The deadline of {what} together.")


def repo_option(function: F) -> F:
    return click.option(
        "--repo", "repo", default=None, metavar="DIR",
        type=click.Path(file_okay=False, path_type=str),
        help="The connection repository (its root, where .sops.yaml is). Default: the first "
             "directory with connc's layout from here up, as git finds its repository.",
    )(function)


def _complete_ids(kind: str) -> Callable[[click.Context, click.Parameter, str], list[str]]:
    """Shell completion of the ids of the repository's connections or pipelines."""

    def complete(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
        from connc import repository
        from connc.errors import ConncError

        try:
            listing = repository.list_files(repository.find_root(ctx.params.get("repo")))
        except (ConncError, OSError):
            return []
        files, suffix = ((listing.connections, repository.CONNECTION_SUFFIX)
                         if kind == "Connection" else
                         (listing.pipelines, repository.PIPELINE_SUFFIX))
        return [i for i in (repository.stem(f, suffix) for f in files) if i.startswith(incomplete)]

    return complete


def _complete_types(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    from connc.schema.connection_types import NAMES

    return [t for t in NAMES if t.startswith(incomplete)]


def _diff_root(repo: str | None) -> Path:
    """diff's repository: the layout may exist at a revision only, so without --repo the
    current directory is taken when no directory above it has the layout."""
    from connc.errors import UsageError
    from connc.repository import find_root, working_directory

    if repo is not None:
        return Path(repo)
    try:
        return find_root()
    except UsageError:
        # As the shell names it: a symlink on the way is read at each revision as itself.
        return working_directory()


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="connc", prog_name="connc")
def cli() -> None:
    """Compile SOPS-encrypted service connections into per-pipeline credential bundles."""


def _no_cycle_collection() -> None:
    """For the rest of a process that ends with its report (`validate`, `diff`,
    `approvals`): what they build (10,000 judgements from the workers; for diff two
    revisions and a million grants) lives to the end and drops no cycle, and the cyclic
    collector's passes over it cost diff 0.5 s and validate 0.2 s at 10,000 connections, for
    nothing. Reference counting still frees whatever is dropped; validate's workers collect
    as always (`validate.pool`)."""
    import gc

    gc.disable()


@cli.command()
@repo_option
@click.option("--decrypt", is_flag=True,
              help="Also decrypt every connection (needs a sops key) and check its contents.")
@click.option("--format", "output_format", default="auto", show_default=True,
              type=click.Choice(["auto", "text", "json", "github"]),
              help="auto is github under GitHub Actions, else text.")
@click.option("--strict", is_flag=True, help="Fail on warnings too.")
@timeout_option(600, "every decryption of --decrypt")
def validate(repo: str | None, decrypt: bool, output_format: str, strict: bool,
             timeout: float) -> None:
    """Check every file, reference and scope of use. Keyless unless --decrypt.

    Exit 0 when there is no error, 1 when findings fail, 2 for usage or environment errors.

    \b
    Examples:
      connc validate
      connc validate --repo infra/connections --format json
      SOPS_AGE_KEY_FILE=key.txt connc validate --decrypt --strict
    """
    from connc.findings import has_errors
    from connc.repository import find_root
    from connc.validate import report as reporters
    from connc.validate.run import validate as run_validate

    if not decrypt:  # a sops run per file makes garbage of its own: collected as usual
        _no_cycle_collection()
    report = run_validate(find_root(repo), decrypt=decrypt, timeout=timeout)
    reporters.REPORTERS[reporters.resolve_format(output_format)](
        report.findings, report.files, sys.stdout)
    sys.exit(ExitCode.FINDINGS if has_errors(report.findings, strict=strict) else ExitCode.OK)


@cli.command()
@repo_option
@click.option("--format", "output_format", default="table", show_default=True,
              type=click.Choice(["table", "json", "csv"]),
              help="table: one row per pipeline; json and csv: the whole matrix.")
@click.option("--pipeline", "pipeline_id", metavar="ID", help="Only this pipeline.")
@click.option("--connection", "connection_id", metavar="ID",
              help="Only the pipelines that use or may use this connection.")
def access(repo: str | None, output_format: str, pipeline_id: str | None,
           connection_id: str | None) -> None:
    """Which pipeline uses, may use, or is denied which connection (keyless).

    Files with errors are left out; `connc validate` names them.

    \b
    Examples:
      connc access
      connc access --connection k8s-prod
      connc access --format csv > access.csv
    """
    from connc.diff.access import FORMATS, matrix, select
    from connc.findings import has_errors
    from connc.repository import check_id, find_root
    from connc.validate.run import validate as run_validate

    for given, what in ((pipeline_id, "pipeline"), (connection_id, "connection")):
        if given is not None:
            check_id(given, what)
    report = run_validate(find_root(repo))
    grants = matrix(report.connections, report.pipelines)
    chosen = select(grants, pipeline_id, connection_id)
    known = {g.pipeline for g in grants} if pipeline_id else {g.connection for g in grants}
    if (pipeline_id or connection_id) and not chosen:
        from connc.findings import suggest

        name = pipeline_id or connection_id or ""
        raise click.UsageError(f"no {'pipeline' if pipeline_id else 'connection'} `{name}` "
                               f"with any grant{suggest(name, known)}")
    FORMATS[output_format](chosen, sys.stdout)
    if has_errors(report.findings):
        click.echo("connc: the repository has errors; files with errors are not in the "
                   "matrix (run `connc validate`)", err=True)


@cli.command()
@click.option("--out", "out", default="schema", show_default=True,
              type=click.Path(file_okay=False, path_type=str),
              help="Directory for the *.schema.json files.")
def schema(out: str) -> None:
    """Write JSON Schemas for every file kind (for editors and other checkers).

    \b
    Examples:
      connc schema
      connc schema --out /tmp/schemas
    """
    from connc.schema.generate import write_schemas

    for path in write_schemas(out):
        click.echo(path)


@cli.command()
@click.argument("pipeline_argument", metavar="ID", required=False,
                shell_complete=_complete_ids("Pipeline"))
@click.option("--pipeline", "pipeline_option", metavar="ID",
              help="The pipeline id, as the ID argument (kept for older scripts).")
@repo_option
@click.option("--out", "out", default=None, type=click.Path(path_type=str),
              help="Bundle directory. Default: $RUNNER_TEMP/connc/ID, else a new temp dir.")
@click.option("--format", "output_format", default="shell", show_default=True,
              type=click.Choice(["shell", "json", "github"]),
              help="shell: print the env file; json: the manifest; github: write $GITHUB_ENV "
                   "and mask every secret.")
@click.option("--timeout", default=None, type=click.FloatRange(1, 3600), metavar="SECONDS",
              help="The whole run's deadline: every decryption together (default 120).")
def render(pipeline_argument: str | None, pipeline_option: str | None, repo: str | None,
           out: str | None, output_format: str, timeout: float | None) -> None:
    """Decrypt what pipeline ID (pipelines.d/ID.yaml) may use and write its credential bundle.

    Needs a sops key in the environment (SOPS_AGE_KEY_FILE, ...). Then `. OUT/env`.

    \b
    Examples:
      connc render api-release --out /tmp/creds && . /tmp/creds/env
      eval "$(connc render api-release)"
      connc render api-release --format github
    """
    from connc.render.run import DEFAULT_TIMEOUT, command

    if (pipeline_argument is None) == (pipeline_option is None):
        raise click.UsageError("give the pipeline id once: `connc render ID`")
    pipeline = pipeline_argument if pipeline_argument is not None else pipeline_option
    command(pipeline or "", repo, out, output_format,
            DEFAULT_TIMEOUT if timeout is None else timeout)


@cli.command()
@click.argument("out", type=click.Path(path_type=str))
def clean(out: str) -> None:
    """Revoke the bundle's minted tokens and remove the bundle OUT.

    \b
    Examples:
      connc clean /tmp/creds
      connc clean "$RUNNER_TEMP/connc/api-release"
    """
    from connc.render.clean import clean as run_clean

    for message in run_clean(Path(out)):
        click.echo(message, err=True)


@cli.command()
@click.argument("base")
@click.argument("head", required=False)
@repo_option
@click.option("--format", "output_format", default="markdown", show_default=True,
              type=click.Choice(["markdown", "json"]),
              help="markdown: a pull-request comment; json: the same changes, for tools.")
def diff(base: str, head: str | None, repo: str | None, output_format: str) -> None:
    """What a change does to access: grants, scopes, owners, recipients, team members.

    Compares revision BASE with HEAD, or with the working tree when HEAD is omitted (keyless).
    Exit 0 when no access widened, 1 when some did, 2 for a bad revision or repository.

    \b
    Examples:
      connc diff origin/main
      connc diff "$BASE_SHA" "$HEAD_SHA" > comment.md
      connc diff HEAD~1 HEAD --format json
    """
    from connc.diff.report import FORMATS
    from connc.diff.run import diff as run_diff

    _no_cycle_collection()
    result = run_diff(_diff_root(repo), base, head)
    FORMATS[output_format](result, sys.stdout)
    sys.exit(ExitCode.FINDINGS if result.widened else ExitCode.OK)


@cli.command()
@click.argument("base")
@click.argument("head", required=False)
@repo_option
@click.option("--github-pr", "github_pr", type=int, metavar="N",
              help="Count APPROVED reviews on pull request N's head commit, and its author's "
                   "signed commits. Reads GITHUB_REPOSITORY, GITHUB_TOKEN, GITHUB_API_URL.")
@click.option("--github-merge-group", "merge_group", metavar="REF",
              help="As --github-pr, for a merge queue: REF is the group's branch "
                   "(github.event.merge_group.head_ref), BASE and HEAD its base and head.")
@click.option("--gitlab-mr", "gitlab_mr", type=int, metavar="N",
              help="Count approvals given since GitLab recorded merge request N's head, and its "
                   "author's signed commits. Reads CI_API_V4_URL, CI_PROJECT_ID, GITLAB_TOKEN "
                   "(or CI_JOB_TOKEN).")
@click.option("--approved-by", "approved_by", metavar="USER[,USER...]",
              help="These users of members.yaml consent (other forges, manual gates).")
@click.option("--format", "output_format", default="text", show_default=True,
              type=click.Choice(["text", "json"]))
@click.option("--timeout", default=10.0, show_default=True, type=click.FloatRange(0.1, 300),
              help="Seconds for each request to the GitHub or GitLab API.")
def approvals(base: str, head: str | None, repo: str | None, github_pr: int | None,
              merge_group: str | None, gitlab_mr: int | None, approved_by: str | None,
              output_format: str, timeout: float) -> None:
    """Has every change of `connc diff BASE HEAD` that widens access the consent it needs?

    Each widening change needs its connection's owner, its pipeline's owner, or an admin
    (connc.yaml `admins`), resolved at BASE; an admin's approval stands in for anyone's.
    Exit 0 when every consent is given, 1 when some is missing (listed), 2 for usage,
    revision or API errors. Run it as a required check.

    \b
    Examples:
      connc approvals "$BASE_SHA" "$HEAD_SHA" --github-pr "$PR_NUMBER"
      connc approvals "$BASE_SHA" "$HEAD_SHA" --github-merge-group "$MERGE_GROUP_REF"
      connc approvals "$CI_MERGE_REQUEST_DIFF_BASE_SHA" "$CI_COMMIT_SHA" \\
          --gitlab-mr "$CI_MERGE_REQUEST_IID"
      connc approvals origin/main HEAD --approved-by alice,bob --format json
    """
    from connc.diff import approvals as consent
    from connc.diff.run import diff as run_diff

    _no_cycle_collection()

    if sum(option is not None
           for option in (github_pr, merge_group, gitlab_mr, approved_by)) != 1:
        raise click.UsageError("give one of --github-pr N, --github-merge-group REF, "
                               "--gitlab-mr N or --approved-by USER[,USER...]")
    root = _diff_root(repo)
    result = run_diff(root, base, head)
    if approved_by is not None:
        verdict = consent.approved_by(result, approved_by)
    elif gitlab_mr is not None:
        verdict = consent.from_gitlab(result, root, gitlab_mr, timeout)
    else:
        verdict = consent.from_github(result, github_pr, timeout, merge_group=merge_group)
    consent.FORMATS[output_format](verdict, sys.stdout)
    sys.exit(ExitCode.OK if verdict.approved else ExitCode.FINDINGS)


@cli.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False, path_type=str))
@click.option("--owner", required=True, metavar="USER",
              help="The first user of members.yaml: owner of what they create, and admin.")
@click.option("--new-key", "new_key", metavar="FILE", type=click.Path(dir_okay=False),
              help="Write a fresh age key to FILE (0600, outside the repository) and encrypt "
                   "to it.")
@click.option("--recipient", "recipients", multiple=True, metavar="KEY",
              help="Encrypt to this public key instead (age1..., a KMS ARN...; repeatable).")
@click.option("--github", metavar="LOGIN", help="The owner's GitHub account (connc approvals).")
@click.option("--connc-requirement", metavar="REQ",
              help="What the workflows pip-install. Default: where this connc came from "
                   "(connc==VERSION from an index, or a git URL at its commit); init says "
                   "when CI cannot install that.")
@click.option("--pipeline", "pipeline", metavar="ID",
              help="Also write the first pipeline, pipelines.d/ID.yaml (with --runner-key).")
@click.option("--runner-key", "runner_keys", multiple=True, metavar="KEY",
              help="The public key its runner renders with (age1...; repeatable).")
def init(directory: str, owner: str, new_key: str | None, recipients: tuple[str, ...],
         github: str | None, connc_requirement: str | None, pipeline: str | None,
         runner_keys: tuple[str, ...]) -> None:
    """Turn an empty directory or git repository into a connection repository.

    Writes .sops.yaml, members.yaml (the owner), connc.yaml (requireSeals, the owner as
    admin), connections.d/, pipelines.d/, the validate and access-review workflows and
    .gitignore entries; refuses a directory that is already a connection repository, and
    never prompts. The result validates with no finding.

    \b
    Examples:
      connc init --owner alice --new-key ~/.config/connc/age.txt
      connc init infra/connections --owner alice --recipient age1...
      connc init --owner alice --new-key ~/.config/connc/age.txt \\
          --pipeline deploy --runner-key "$(connc keys new runner-deploy.txt)"
    """
    from connc.author.init import init as run_init

    done = run_init(Path(directory), owner=owner, recipients=recipients,
                    new_key=Path(new_key) if new_key else None, github=github,
                    connc_requirement=connc_requirement, pipeline=pipeline,
                    runner_keys=runner_keys)
    for line in done.messages():
        click.echo(line, err=True)


@cli.command("new")
@click.argument("connection_type", metavar="TYPE", shell_complete=_complete_types)
@click.argument("connection_id", metavar="ID")
@click.option("--owner", default=None, metavar="USER",
              help="The owning user (in members.yaml). Default: its only user, if it has one.")
@click.option("--visibility", default="private", show_default=True,
              type=click.Choice(["private", "public", "custom"]),
              help="Who may use it: the owner's pipelines, every pipeline, or --member ones.")
@click.option("--member", "members", multiple=True, metavar="M",
              help="With --visibility custom: user:NAME, team:NAME or pipeline:ID (repeatable).")
@click.option("--auth", type=click.Choice(["oidc"]), default=None,
              help="kubernetes only: secretless, the CI job's OIDC ID token as the bearer.")
@repo_option
def new(connection_type: str, connection_id: str, owner: str | None, visibility: str,
        members: tuple[str, ...], auth: str | None, repo: str | None) -> None:
    """Scaffold connections.d/ID.sops.yaml from TYPE's template, encrypted with sops.

    TYPE: github-app, gitlab, gitlab-self-hosted, codeup, bitbucket, git, container-registry,
    kubernetes, packages, or the secretless aws-ecr and pypi-publish (no stored secret: render
    exchanges the CI job's identity). The file validates at once; its credential values and
    the spec values marked REPLACE-ME are placeholders until you change them. Needs no sops
    key. Prints the new file's path, then the next steps (on stderr).

    \b
    Examples:
      connc new gitlab gitlab-acme --owner alice
      connc new kubernetes k8s-prod --owner alice --visibility custom \\
          --member team:platform --member pipeline:deploy
      connc new aws-ecr ecr-prod --owner alice
      connc new kubernetes k8s-ci --auth oidc
    """
    from connc.author.new import new_connection
    from connc.repository import find_root
    from connc.validate import report as reporters

    created = new_connection(find_root(repo), connection_type, connection_id, owner=owner,
                             visibility=visibility, members=members, auth=auth)
    if created.findings:
        reporters.text(created.findings, 1, sys.stdout)
    click.echo(created.relpath)
    for line in created.next_steps():
        click.echo(line, err=True)


@cli.group()
def secret() -> None:
    """Change a connection's encrypted credential (needs a sops key).

    \b
    Examples:
      connc secret set gitlab-acme token < token.txt
      connc secret unset k8s-prod token
    """


@secret.command("set")
@click.argument("connection_id", metavar="ID", shell_complete=_complete_ids("Connection"))
@click.argument("field", metavar="FIELD")
@repo_option
@timeout_option(120, "the sops runs (write, reseal)")
def secret_set(connection_id: str, field: str, repo: str | None, timeout: float) -> None:
    """Set credential FIELD of connection ID to the value read from stdin.

    Never from the command line or the environment, where other processes see it. One
    trailing newline is dropped; on a terminal the value is asked for twice, hidden. sops
    rewrites that one value and keeps the comments and everything else. sops must decrypt
    the file's data key first, so this needs a key (SOPS_AGE_KEY_FILE, ...).

    \b
    Examples:
      connc secret set gitlab-acme token < token.txt
      connc secret set github-acme privateKey < acme-app.private-key.pem
      connc secret set registry-prod password        # asks, hidden
    """
    from connc.author.secret_set import set_secret
    from connc.process import Deadline
    from connc.repository import find_root

    changed = set_secret(find_root(repo), connection_id, field, sys.stdin.buffer,
                         deadline=Deadline(timeout, "--timeout"))
    for line in changed.messages():
        click.echo(line, err=True)


@secret.command("unset")
@click.argument("connection_id", metavar="ID", shell_complete=_complete_ids("Connection"))
@click.argument("field", metavar="FIELD")
@repo_option
@timeout_option(120, "the sops runs (remove, reseal)")
def secret_unset(connection_id: str, field: str, repo: str | None, timeout: float) -> None:
    """Remove credential FIELD of connection ID (an alternative it does not use), and reseal.

    Refused, with nothing changed, when what stays holds no complete credential. sops rewrites
    the credential and keeps the comments and everything else; needs a sops key.

    \b
    Examples:
      connc secret unset k8s-prod token        # after setting clientCertificateData + clientKeyData
      connc secret unset npm-internal password
    """
    from connc.author.secret_unset import unset_secret
    from connc.process import Deadline
    from connc.repository import find_root

    removed = unset_secret(find_root(repo), connection_id, field,
                           deadline=Deadline(timeout, "--timeout"))
    for line in removed.messages():
        click.echo(line, err=True)


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False,
                               "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def sops(args: tuple[str, ...]) -> None:
    """Run the sops that comes with connc: `connc sops ARGS...` is `sops ARGS...`.

    No sops on PATH is needed (a pipx install has none). sops runs here, as sops, with connc's
    default key file when no SOPS_AGE_KEY_FILE is set. `connc sops --help` is sops' help.

    \b
    Examples:
      connc sops updatekeys connections.d/k8s-prod.sops.yaml
      connc sops edit connections.d/k8s-prod.sops.yaml
    """
    from connc.sops.binary import become

    become(list(args))


@cli.command()
@click.argument("ids", nargs=-1, metavar="[ID]...", shell_complete=_complete_ids("Connection"))
@click.option("--all", "every", is_flag=True, help="Every connection of the repository.")
@click.option("--dry-run", is_flag=True, help="Print what would be sealed; write nothing.")
@repo_option
@timeout_option(600, "every sops run (decrypt, reseal)")
def seal(ids: tuple[str, ...], every: bool, dry_run: bool, repo: str | None,
         timeout: float) -> None:
    """Approve each connection's plaintext as it is now, with a key: write its seal.

    A seal binds the credential to its id, owner, scope and spec: render
    and check refuse a credential whose plaintext changed since. For each connection this
    prints what changed since its last seal (fields and their values now), then reseals it,
    without prompting. Needs a sops key that decrypts the file (exit 2 without one).

    \b
    Examples:
      connc seal k8s-prod
      connc seal --all --dry-run
      SOPS_AGE_KEY_FILE=admin-key.txt connc seal --all
    """
    from connc.author import seal as sealing
    from connc.process import Deadline
    from connc.repository import find_root

    deadline = Deadline(timeout, "--timeout")
    root = find_root(repo)
    for done, current in sealing.seal_all(root, sealing.select(root, ids, every),
                                          dry_run=dry_run, deadline=deadline):
        click.echo(done.message(current, dry_run))


@cli.group(invoke_without_command=True)
@repo_option
@click.option("--connection", "connection_id", metavar="ID", help="Only this connection.")
@click.option("--pipeline", "pipeline_id", metavar="ID",
              help="Only the connections this pipeline uses.")
@click.option("--format", "output_format", default="table", show_default=True,
              type=click.Choice(["table", "json"]))
@click.pass_context
def keys(ctx: click.Context, repo: str, connection_id: str | None, pipeline_id: str | None,
         output_format: str) -> None:
    """Who holds a key to each connection, and who needs one (keyless).

    Each recipient of a connection's file and whose key it is, flagged when it is outside the
    connection's scope; the pipelines that use it but cannot decrypt it, or declare no runner
    key; the principals in its scope without a key; and what `connc keys sync` would change.

    \b
    Examples:
      connc keys
      connc keys --pipeline deploy
      connc keys sync --all --dry-run
    """
    if ctx.invoked_subcommand is not None:
        return
    from connc.findings import suggest
    from connc.keys import view
    from connc.keys.current import read
    from connc.repository import check_id, find_root

    if connection_id is not None and pipeline_id is not None:
        raise click.UsageError("give --connection or --pipeline, not both")
    for given, what in ((pipeline_id, "pipeline"), (connection_id, "connection")):
        if given is not None:
            check_id(given, what)
    current = read(find_root(repo))
    known = current.keyring.pipelines if pipeline_id is not None else current.connections
    name = pipeline_id or connection_id
    if name is not None and name not in known:
        raise click.UsageError(f"no {'pipeline' if pipeline_id else 'connection'} `{name}`"
                               f"{suggest(name, known)} (or its file has errors: "
                               f"`connc validate`)")
    view.FORMATS[output_format](view.rows(current, connection_id, pipeline_id), sys.stdout)
    if current.unread:
        from connc.findings import printable

        click.echo(f"connc: {len(current.unread)} file(s) could not be read and are left out "
                   f"(run `connc validate`): {printable(', '.join(current.unread[:5]))}",
                   err=True)


@keys.command("sync")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option("--all", "every", is_flag=True, help="Every connection of the repository.")
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@repo_option
@timeout_option(600, "every sops run (updatekeys, decrypt, reseal)")
def keys_sync(ids: tuple[str, ...], every: bool, dry_run: bool, repo: str,
              timeout: float) -> None:
    """Make each file's recipients exactly what its scope and its users need, and reseal.

    The keys: connc.yaml's adminRecipients, the owner's, and the runner keys of the pipelines
    that use the connection. They are written as creation rules in .sops.yaml (one per set
    of keys, ahead of your other rules), applied with `sops updatekeys`, and the credential is
    resealed (`connc seal`). Prints the plan first: recipients added and removed, whose they
    are, and the credentials to rotate. Whole files or nothing, even when interrupted. Needs
    a sops key that decrypts the files it changes (exit 2 without one).

    \b
    Examples:
      connc keys sync --all --dry-run
      connc keys sync k8s-prod registry-prod
      SOPS_AGE_KEY_FILE=admin-key.txt connc keys sync --all
    """
    from connc.keys.sync import run as run_sync
    from connc.repository import find_root

    run_sync(find_root(repo), ids, every, dry_run, click.echo, timeout)


@keys.command("new")
@click.argument("file", type=click.Path(dir_okay=False, path_type=str))
def keys_new(file: str) -> None:
    """Write a fresh age key to FILE (0600, never overwritten) and print its public key.

    For a person who joins, or a runner: the public key goes into members.yaml (a user's or a
    team's `recipients`) or a pipeline's `metadata.recipients`; the key file stays with its
    holder (a runner's, in the CI system's secret store). The key itself is never printed.

    \b
    Examples:
      connc keys new ~/.config/connc/age.txt
      connc keys new runner-deploy.txt
    """
    from pathlib import Path

    from connc.author.init import write_key

    click.echo(write_key(Path(file)))


@cli.command()
@click.argument("ids", nargs=-1, metavar="[ID]...", shell_complete=_complete_ids("Connection"))
@repo_option
@click.option("--format", "output_format", default="text", show_default=True,
              type=click.Choice(["text", "json"]))
@click.option("--timeout", default=None, type=click.FloatRange(0.1, 3600),
              help="Seconds: each connection's budget (default 10); with --reach, the whole "
                   "run's (default 60).")
@click.option("--reach", is_flag=True,
              help="Also ask what each credential opens (repositories, projects, the "
                   "registry catalog, Kubernetes rules) and compare it with what its "
                   "pipelines use.")
@click.option("--branches", is_flag=True,
              help="With --reach: list the branch names of each repository too.")
@click.option("--id-token-file", "id_token_file", default=None, metavar="FILE",
              type=click.Path(dir_okay=False, path_type=Path),
              help="An OIDC ID token (a JWT) for the secretless connections' exchanges, "
                   "outside CI; in CI the job's own identity is used, elsewhere they are "
                   "skipped.")
def check(ids: tuple[str, ...], repo: str | None, output_format: str, timeout: float | None,
          reach: bool, branches: bool, id_token_file: Path | None) -> None:
    """Verify connections against their services, from this machine's network.

    Each ID given, or every connection: git ls-remote, the registry's /v2/, the cluster's
    /version, a package index, a GitHub App token mint (revoked at once). Needs a sops key;
    a connection it cannot decrypt is "not checked". One line per connection, never a secret.
    Exit 0 when none failed, 1 when one did, 2 for an unknown ID or when none could be decrypted.

    With --reach, each credential's reach is asked, read-only, and shown under its line next
    to what each pipeline that uses it gets; reach beyond every pipeline's use is a warning.

    \b
    Examples:
      SOPS_AGE_KEY_FILE=admin-key.txt connc check
      connc check registry-prod k8s-prod --timeout 5
      connc check --format json > check.json
      connc check --reach github-acme --branches
      connc check --reach --format json > reach.json
    """
    from connc.repository import find_root

    if branches and not reach:
        raise click.UsageError("--branches lists branches with --reach; add --reach")
    if id_token_file is not None and reach:
        raise click.UsageError("--id-token-file is for checking exchanges; --reach asks with "
                               "the CI job's identity only")
    root = find_root(repo)
    if reach:
        from connc.check.reach_run import run as run_reach

        sys.exit(run_reach(root, ids, output_format, 60.0 if timeout is None else timeout,
                           branches))
    from connc.check.run import run as run_check

    sys.exit(run_check(root, ids, output_format, 10.0 if timeout is None else timeout,
                       id_token_file=id_token_file))


@cli.command("id-token")
@click.option("--audience", required=True, metavar="AUD",
              help="The token's audience (the connection's `identity.audience`).")
@click.option("--provider", default="auto", show_default=True,
              type=click.Choice(["auto", "github-actions"]),
              help="Where the token comes from; auto: the CI job this runs in.")
@click.option("--issuer", default=None, metavar="URL",
              help="Refuse a token from another issuer (`identity.issuer`).")
@click.option("--connection", "connection_id", default="kubeconfig", metavar="ID",
              help="The connection the kubeconfig was rendered for (named in errors).")
@click.option("--exec-credential", "exec_credential", is_flag=True, required=True,
              help="Print kubectl's ExecCredential (the only output: the token goes to "
                   "kubectl, never to a log).")
def id_token(audience: str, provider: str, issuer: str | None, connection_id: str,
             exec_credential: bool) -> None:
    """A fresh OIDC ID token of this CI job, for kubectl (a kubeconfig's exec plugin).

    The kubeconfig that `connc render` writes for a kubernetes connection with `auth: oidc`
    and `refresh: exec` runs this whenever kubectl needs a token; it is refused outside
    kubectl (no KUBERNETES_EXEC_INFO) and in pull_request_target jobs.

    \b
    Examples (in a kubeconfig's users[].user.exec):
      connc id-token --audience kubernetes --exec-credential
    """
    import os

    from connc.errors import UsageError
    from connc.identity.exchange import exec_credential as credential
    from connc.repository import check_id
    from connc.schema import check, policy

    check_id(connection_id, "connection")

    if not check.matches(policy.AUDIENCE_PATTERN, audience):
        raise UsageError("--audience is printable ASCII without spaces, 1 to 255 characters")
    if issuer is not None:
        try:
            policy.check_url(issuer, ("https",))
        except policy.Violation as violation:
            raise UsageError(f"--issuer {violation.message}") from None
    sys.stdout.write(credential(connection_id, audience, provider, issuer, os.environ) + "\n")


def run(argv: list[str]) -> int:
    """Run the click group on `argv`; click's own outcomes become exit codes. Everything else
    (ConncError, interrupts, bugs) is the entry point's to map (`connc.__main__`)."""
    try:
        cli.main(args=argv, prog_name="connc", standalone_mode=False)
    except SystemExit as exc:  # a command's `sys.exit(code)`: the entry point still flushes
        return exc.code if isinstance(exc.code, int) else ExitCode.INTERNAL
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return ExitCode.USAGE
    except click.exceptions.Abort:  # click's form of KeyboardInterrupt
        raise KeyboardInterrupt from None
    return ExitCode.OK
