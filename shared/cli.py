"""The `sortloop` command line. Heavy commands import their engine lazily."""

from __future__ import annotations

import sys

import click
from sqlalchemy import select

from shared.config import Config, ConfigError
from shared.db import make_engine, make_session_factory, session_scope
from shared.training_config import DEFAULT_METHOD, METHODS


def _config() -> Config:
    try:
        return Config.from_env()
    except ConfigError as error:
        raise click.UsageError(str(error)) from None


def _sessions(config: Config):
    return make_session_factory(make_engine(config.database_url))


@click.group()
def cli() -> None:
    """Sortloop: sort public submissions and fine-tune the classifier from corrections."""


@cli.command()
@click.option("--no-seed", is_flag=True, help="do not add the default categories")
def migrate(no_seed: bool) -> None:
    """Upgrade the database at DATABASE_URL to the newest migration."""
    from shared import migrations
    from shared.seed import seed_default_categories

    config = _config()
    migrations.upgrade(config.database_url, alembic_dir=config.alembic_dir)
    click.echo("database is at the newest migration", err=True)
    if not no_seed:
        with session_scope(_sessions(config)) as session:
            added = seed_default_categories(session)
        if added:
            click.echo(f"added {added} default categories", err=True)


@cli.command("create-admin")
@click.option("--username", required=True)
@click.option("--password", required=True, help="at least 8 characters")
def create_admin(username: str, password: str) -> None:
    """Create an admin account, or reset its password if it exists."""
    from shared.models import AdminUser

    username = username.strip()
    if not username or len(username) > 100:
        raise click.BadParameter("give a username of 1 to 100 characters", param_hint="--username")
    if len(password) < 8:
        raise click.BadParameter("use at least 8 characters", param_hint="--password")
    with session_scope(_sessions(_config())) as session:
        user = session.scalar(select(AdminUser).where(AdminUser.username == username))
        created = user is None
        if user is None:
            user = AdminUser(username=username)
            session.add(user)
        user.set_password(password)
    click.echo(f"admin {username!r} {'created' if created else 'password reset'}")


def _active_model(config: Config, sessions):
    """The active model (base or deployed adapter), loaded on first use; tests replace it."""
    from shared.deployment.active_model import ActiveModel

    return ActiveModel(config, sessions, owner="cli")


def _import_with_progress(session, analyzer, rows, config, label: str, **options):
    from shared.submissions.importing import import_rows

    with click.progressbar(length=len(rows), label=label, file=sys.stderr) as bar:
        return import_rows(session, analyzer, rows, config, progress=bar.update, **options)


@cli.command("seed-demo")
def seed_demo() -> None:
    """Add the demo submissions the project ships (only into an empty database).

    They are classified by the active model like any import; every other one is then
    given its category by "an admin", so the training data has corrections and
    confirmations to show.
    """
    from shared.models import Submission
    from shared.seed import demo_submissions, seed_default_categories
    from shared.submissions.importing import ImportRow

    config = _config()
    sessions = _sessions(config)
    with session_scope(sessions) as session:
        seed_default_categories(session)
        if session.scalar(select(Submission.id).limit(1)) is not None:
            click.echo("submissions exist already: no demo data added", err=True)
            return
        rows = [
            ImportRow(
                line=n, text=r["text"], label=r["label"], contributor_type=r["contributor_type"]
            )
            for n, r in enumerate(demo_submissions(), start=2)
        ]
        analyzer = _active_model(config, sessions)
        reviewed = _import_with_progress(
            session, analyzer, rows[::2], config, "demo (reviewed)", as_corrections=True
        )
        plain = _import_with_progress(session, analyzer, rows[1::2], config, "demo")
    click.echo(
        f"added {reviewed.imported + plain.imported} demo submissions "
        f"({reviewed.training_examples} reviewed: {reviewed.corrections} corrections)",
        err=True,
    )


@cli.command("import-submissions")
@click.argument("csv_file", metavar="FILE.csv", type=click.Path(dir_okay=False))
@click.option("--text-column", default="text", show_default=True)
@click.option("--label-column", default="label", show_default=True)
@click.option(
    "--contributor-type-column",
    default=None,
    help="column with the contributor type (default: 'other' for every row)",
)
@click.option(
    "--as-corrections",
    is_flag=True,
    help="the label is also the admin's category: each row becomes a training example",
)
@click.option(
    "--create-categories",
    is_flag=True,
    help="with --as-corrections: add unknown labels as categories (label as description)",
)
@click.option(
    "--batch-size",
    default=256,
    show_default=True,
    type=click.IntRange(1, 4096),
    help="rows per batch (classified here, or stored before the worker takes them)",
)
@click.option(
    "--on-worker",
    is_flag=True,
    help="store the rows at once and let the CPU worker (queue default) classify them in "
    "batches of SORTLOOP_WORKER_BATCH_SIZE; the admin shows them arriving",
)
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="with --on-worker: show the worker's progress until every row is classified",
)
@click.option("--wait-timeout", default=3600, show_default=True, type=click.IntRange(1))
def import_submissions(
    csv_file: str,
    text_column: str,
    label_column: str,
    contributor_type_column: str | None,
    as_corrections: bool,
    create_categories: bool,
    batch_size: int,
    on_worker: bool,
    wait: bool,
    wait_timeout: int,
) -> None:
    """Store each row of FILE.csv as a submission, classified by the active model.

    Bad rows are reported with their line numbers and skipped; good rows are kept.
    """
    from shared.errors import InvalidInput
    from shared.submissions.importing import read_csv_rows

    if create_categories and not as_corrections:
        raise click.UsageError("--create-categories only makes sense with --as-corrections")
    if on_worker and as_corrections:
        raise click.UsageError(
            "--as-corrections compares each label with the model's prediction: "
            "leave out --on-worker"
        )
    config = _config()
    try:
        rows = read_csv_rows(
            csv_file,
            text_column=text_column,
            label_column=label_column,
            contributor_type_column=contributor_type_column,
            require_label=as_corrections,
        )
    except InvalidInput as error:
        raise click.UsageError(str(error)) from None
    sessions = _sessions(config)
    session = sessions()
    try:
        report = _import_with_progress(
            session,
            _active_model(config, sessions),
            rows,
            config,
            "importing",
            as_corrections=as_corrections,
            create_categories=create_categories,
            batch_size=batch_size,
            defer=on_worker,
        )
    finally:
        session.close()
    if on_worker and report.waiting_ids:
        task_id = _enqueue_classification(config)
        click.echo(f"the worker classifies {report.imported} rows (task {task_id})", err=True)
        if wait:
            report.classified = _wait_for_worker(sessions, report.waiting_ids, wait_timeout)
    for line, problem in report.bad_rows:
        click.echo(f"line {line}: skipped: {problem}", err=True)
    for name in report.categories_created:
        click.echo(f"added category {name!r}", err=True)
    summary = (
        f"imported {report.imported} of {len(rows)} rows "
        f"({report.classified} classified, {len(report.bad_rows)} skipped"
    )
    if as_corrections:
        summary += (
            f", {report.training_examples} training examples, {report.corrections} corrections"
        )
    click.echo(summary + ")")
    if rows and not report.imported:
        sys.exit(1)


def _enqueue_classification(config: Config) -> str:
    from celery import Celery

    from shared import task_names

    client = Celery("sortloop-cli", broker=config.broker_url, backend=config.result_backend)
    client.conf.update(**task_names.messaging_settings())
    try:
        result = client.send_task(
            task_names.CLASSIFY_PENDING,
            queue=task_names.queue_of(task_names.CLASSIFY_PENDING),
            ignore_result=True,
        )
    except Exception as error:  # kombu and redis-py raise their own
        raise click.ClickException(
            f"the rows are stored, but the task queue is not reachable ({error}); "
            "beat's sweep classifies them once it is"
        ) from None
    return result.id


def _wait_for_worker(sessions, ids: list[int], timeout: float) -> int:
    """Show the worker's progress on these rows; how many it classified."""
    import time

    from sqlalchemy import func

    from shared.models import Submission

    def waiting() -> int:
        with session_scope(sessions) as session:
            return session.scalar(
                select(func.count())
                .select_from(Submission)
                .where(
                    Submission.classification_pending.is_(True),
                    Submission.id.between(ids[0], ids[-1]),
                )
            )

    deadline = time.monotonic() + timeout
    with click.progressbar(length=len(ids), label="classifying", file=sys.stderr) as bar:
        done = 0
        while True:
            left = waiting()
            bar.update(len(ids) - left - done)
            done = len(ids) - left
            if not left:
                return done
            if time.monotonic() > deadline:
                raise click.ClickException(
                    f"{left} rows still wait after {timeout} s: is a worker consuming the "
                    "default queue? They stay stored and are classified when one runs"
                )
            time.sleep(0.2)  # polling the database with a deadline


@cli.command("classify")
@click.argument("texts", nargs=-1, required=True)
def classify(texts: tuple[str, ...]) -> None:
    """Print the active model's category, confidence and scores for each TEXT (JSON lines)."""
    import json

    from shared.submissions.categories import active_category_specs

    config = _config()
    sessions = _sessions(config)
    with session_scope(sessions) as session:
        categories = active_category_specs(session)
    if not categories:
        raise click.UsageError("there is no active category: run `sortloop migrate` first")
    result = _active_model(config, sessions).classify(list(texts), categories)
    for text, prediction in zip(texts, result.predictions, strict=True):
        line = {
            "text": text,
            "category": prediction.label,
            "confidence": round(prediction.confidence, 6),
            "scores": {name: round(value, 6) for name, value in prediction.scores.items()},
            "model_version": result.version,
        }
        click.echo(json.dumps(line, ensure_ascii=False))


@cli.command("train")
@click.option(
    "--csv", "csv_path", required=True, type=click.Path(dir_okay=False), help="labelled examples"
)
@click.option("--test-csv", type=click.Path(dir_okay=False), help="separate test set")
@click.option("--text-column", default="text", show_default=True)
@click.option("--label-column", default="label", show_default=True)
@click.option(
    "--per-category", type=int, help="use K examples per category (sampled with the seed)"
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--method", type=click.Choice(list(METHODS)), default=DEFAULT_METHOD, show_default=True
)
@click.option("--cross-validation", is_flag=True, help="also report k-fold CV accuracy")
@click.option("--out", type=click.Path(file_okay=False), help="directory for the adapter")
@click.option("--base-model", help="base model (default: BASE_MODEL or the packaged MiniLM)")
def train(**options: object) -> None:
    """Fine-tune on a CSV with the worker's engine; print one JSON object (progress on stderr)."""
    from worker.fine_tuning.cli import run_train_command

    run_train_command(**options)


def main() -> None:  # pragma: no cover - console entry
    cli(prog_name="sortloop")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
