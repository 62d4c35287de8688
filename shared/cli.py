"""The `sortloop` command line. Heavy commands import their engine lazily."""

from __future__ import annotations

import sys

import click
from sqlalchemy import select

from shared.config import Config, ConfigError
from shared.db import make_engine, make_session_factory, session_scope


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
    migrations.upgrade(config.database_url)
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


@cli.command("seed-demo")
def seed_demo() -> None:
    """Add the demo submissions the project ships (only into an empty database)."""
    from shared.models import Submission
    from shared.seed import demo_submissions, seed_default_categories

    with session_scope(_sessions(_config())) as session:
        seed_default_categories(session)
        if session.scalar(select(Submission.id).limit(1)) is not None:
            click.echo("submissions exist already: no demo data added", err=True)
            return
        rows = demo_submissions()
        for row in rows:
            session.add(Submission(message=row["text"], contributor_type=row["contributor_type"]))
    click.echo(f"added {len(rows)} demo submissions", err=True)


def main() -> None:  # pragma: no cover - console entry
    cli(prog_name="sortloop")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
