"""No Docker engine runs here: check the compose file and Dockerfiles by reading them."""

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_every_service(compose):
    expected = {"postgres", "redis", "migrate", "web", "worker", "worker-cpu", "beat", "flower"}
    assert expected <= set(compose["services"])


@pytest.mark.parametrize("service", ["postgres", "redis", "web"])
def test_stateful_and_public_services_have_healthchecks(compose, service):
    assert compose["services"][service]["healthcheck"]["test"]


def test_database_keeps_its_data_in_a_volume(compose):
    assert any(v.startswith("pgdata:") for v in compose["services"]["postgres"]["volumes"])
    assert {"pgdata", "models"} <= set(compose["volumes"])


@pytest.mark.parametrize("service", ["web", "worker", "worker-inference", "worker-cpu"])
def test_models_volume_is_mounted_at_models_dir(compose, service):
    spec = compose["services"][service]
    assert "models:/data/models" in spec["volumes"]
    assert spec["environment"]["MODELS_DIR"] == "/data/models"


def test_training_worker_reserves_an_nvidia_gpu_and_runs_one_task_at_a_time(compose):
    worker = compose["services"]["worker"]
    device = worker["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    command = worker["command"]
    assert command[command.index("-Q") + 1] == "training"
    assert command[command.index("--concurrency") + 1] == "1"


def test_one_tasks_per_child_setting_in_the_celery_app_and_no_command_line_overrides_it(compose):
    from worker.celery_app import tasks_per_child_for

    assert tasks_per_child_for(["training"]) == tasks_per_child_for("training") == 1
    assert tasks_per_child_for(["default"]) == 10
    assert tasks_per_child_for(["training", "default"]) == 10  # one worker for both
    commands = [" ".join(spec.get("command") or []) for spec in compose["services"].values()]
    commands += [(ROOT / "Procfile").read_text(), (ROOT / "Dockerfile.worker").read_text()]
    assert not [command for command in commands if "max-tasks-per-child" in command]
    apps = {app for command in commands for app in re.findall(r"celery\W+-A\W+([\w.]+)", command)}
    assert apps == {"worker.celery_app"}


def test_training_worker_settings_default_to_a_valid_cuda_config(compose):
    import re

    from shared.config import Config

    environment = compose["services"]["worker"]["environment"]
    names = [
        "SORTLOOP_TRAINING_DEVICE",
        "SORTLOOP_MAX_BATCH_TOKENS",
        "SORTLOOP_GRADIENT_ACCUMULATION",
    ]
    defaults = {
        name: re.fullmatch(r"\$\{" + name + r":-(.+)\}", environment[name]).group(1)
        for name in names
    }
    config = Config.from_env(defaults)
    assert config.training_overrides() == {
        "device": "cuda",
        "max_batch_tokens": 8192,
        "gradient_accumulation_steps": 1,
    }
    assert environment["MODELS_DIR"] == "/data/models"  # the shared settings are merged in


def test_cpu_worker_consumes_the_default_queue(compose):
    command = compose["services"]["worker-cpu"]["command"]
    assert command[command.index("-Q") + 1] == "default"


def _consumed_queues(command: str) -> set[str]:
    from worker.celery_app import selected_queues

    found = re.search(r"celery\W+-A\W+worker\.celery_app\W+worker\b.*?-Q\W+([\w,]+)", command)
    return selected_queues(found.group(1)) if found else set()


def test_every_queue_a_task_is_sent_to_has_a_worker_in_compose_and_in_the_procfile(compose):
    """A task sent to a queue nobody consumes would "run" for ever without running."""
    from shared import task_names

    routed = {task_names.queue_of(name) for name in task_names.ROUTES} | {task_names.DEFAULT_QUEUE}
    assert routed == set(task_names.QUEUES)
    in_compose = set().union(
        *(
            _consumed_queues(" ".join(spec.get("command") or []))
            for spec in compose["services"].values()
        )
    )
    in_procfile = set().union(
        *(_consumed_queues(line) for line in (ROOT / "Procfile").read_text().splitlines())
    )
    assert in_compose == in_procfile == routed


def test_bulk_classification_has_its_own_worker_on_the_gpu(compose):
    """The waiting submissions and re-classification go to `inference`, which compose
    gives a GPU worker of its own: a heavy model classifies there in seconds, and never
    behind a training run on `worker`."""
    from shared import task_names
    from shared.config import Config

    assert task_names.queue_of(task_names.CLASSIFY_PENDING) == task_names.INFERENCE_QUEUE
    assert task_names.queue_of(task_names.RECLASSIFY) == task_names.INFERENCE_QUEUE
    assert task_names.queue_of(task_names.TRAIN) == task_names.TRAINING_QUEUE
    assert task_names.queue_of(task_names.COMPARE_MODELS) == task_names.DEFAULT_QUEUE
    worker = compose["services"]["worker-inference"]
    assert _consumed_queues(" ".join(worker["command"])) == {task_names.INFERENCE_QUEUE}
    device = worker["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    default = re.fullmatch(
        r"\$\{SORTLOOP_INFERENCE_DEVICE:-(.+)\}", worker["environment"]["SORTLOOP_INFERENCE_DEVICE"]
    ).group(1)
    assert Config.from_env({"SORTLOOP_INFERENCE_DEVICE": default}).inference_device == "cuda"
    assert "SORTLOOP_INFERENCE_DEVICE" not in compose["services"]["worker-cpu"]["environment"]


def test_web_runs_gunicorn_after_migrations(compose):
    web = compose["services"]["web"]
    assert web["command"][0] == "gunicorn" and "web:create_app()" in web["command"]
    assert web["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert compose["services"]["migrate"]["command"] == ["sortloop", "migrate"]


def test_flower_is_behind_basic_auth_under_the_admin_prefix(compose):
    command = compose["services"]["flower"]["command"]
    assert any("--basic-auth" in part for part in command)
    assert "--url_prefix=admin/flower" in command


def test_flower_publishes_no_port(compose):
    """Flower serves /metrics and /healthcheck without its password: only web reaches it."""
    assert not compose["services"]["flower"].get("ports")


def test_web_passes_flower_on_to_admins(compose):
    environment = compose["services"]["web"]["environment"]
    assert environment["SORTLOOP_FLOWER_URL"] == "http://flower:5555"
    assert "FLOWER_BASIC_AUTH" in environment


def test_only_web_publishes_ports(compose):
    published = {name for name, spec in compose["services"].items() if spec.get("ports")}
    assert published == {"web"}


@pytest.mark.parametrize("name", ["Dockerfile.web", "Dockerfile.worker"])
def test_dockerfiles_install_the_package(name):
    text = (ROOT / name).read_text()
    assert "pip install ." in text or 'pip install ".[' in text


def test_worker_image_starts_from_a_cuda_pytorch_image():
    first = (ROOT / "Dockerfile.worker").read_text().split("FROM", 1)[1].split()[0]
    assert "pytorch" in first and "cuda" in first


def test_web_image_takes_cpu_torch_and_no_training_stack():
    text = (ROOT / "Dockerfile.web").read_text()
    assert "whl/cpu" in text
    assert "[train" not in text


def test_env_example_names_every_secret_compose_needs():
    example = (ROOT / ".env.example").read_text()
    for name in ("POSTGRES_PASSWORD", "SECRET_KEY", "SORTLOOP_ADMIN_TOKEN", "FLOWER_BASIC_AUTH"):
        assert f"{name}=" in example
