from click.testing import CliRunner
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from shared.cli import cli
from shared.models import AdminUser, Category


def run(args, database_url):
    return CliRunner().invoke(cli, args, env={"DATABASE_URL": database_url})


def test_migrate_creates_the_schema_and_default_categories(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    result = run(["migrate"], url)
    assert result.exit_code == 0, result.output
    with Session(create_engine(url)) as session:
        assert session.scalar(select(func.count()).select_from(Category)) >= 5


def test_create_admin_then_reset_password(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert run(["migrate", "--no-seed"], url).exit_code == 0
    assert (
        run(["create-admin", "--username", "ann", "--password", "first-pass"], url).exit_code == 0
    )
    result = run(["create-admin", "--username", "ann", "--password", "second-pass"], url)
    assert "password reset" in result.output
    with Session(create_engine(url)) as session:
        users = session.scalars(select(AdminUser)).all()
        assert len(users) == 1
        assert users[0].check_password("second-pass")
        assert not users[0].check_password("first-pass")


def test_create_admin_refuses_a_short_password(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert run(["migrate", "--no-seed"], url).exit_code == 0
    result = run(["create-admin", "--username", "ann", "--password", "short"], url)
    assert result.exit_code != 0
    assert "8 characters" in result.output
