from pathlib import Path

import pytest

from shared.classifier.identity import base_model_version
from shared.config import Config, ConfigError

README = Path(__file__).resolve().parents[2] / "README.md"


def test_defaults_work_without_any_environment():
    config = Config.from_env({})
    assert config.database_url.startswith("sqlite:///")
    assert config.broker_url.startswith("redis://")
    assert Path(config.base_model, "config.json").is_file(), "packaged MiniLM is the default"
    assert config.base_model_kind == "embedding"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SESSION_COOKIE_SECURE", "maybe"),
        ("BASE_MODEL_KIND", "transformer"),
        ("SORTLOOP_HEARTBEAT_TIMEOUT", "soon"),
        ("SORTLOOP_TRAINING_TIME_LIMIT", "0"),
        ("SORTLOOP_TRAINING_DEVICE", "tpu"),
        ("SORTLOOP_INFERENCE_DEVICE", "gpu"),
        ("SORTLOOP_MAX_BATCH_TOKENS", "32"),
        ("SORTLOOP_GRADIENT_ACCUMULATION", "100"),
    ],
)
def test_a_bad_value_is_refused_with_the_variable_named(variable, value):
    with pytest.raises(ConfigError, match=variable):
        Config.from_env({variable: value})


def test_the_training_host_settings_become_engine_config_fields():
    from shared.training_config import TrainingConfig

    config = Config.from_env(
        {
            "SORTLOOP_TRAINING_DEVICE": "cpu",
            "SORTLOOP_MAX_BATCH_TOKENS": "2048",
            "SORTLOOP_GRADIENT_ACCUMULATION": "4",
        }
    )
    engine = TrainingConfig.from_dict({"method": "lora", **config.training_overrides()})
    assert (engine.device, engine.max_batch_tokens, engine.gradient_accumulation_steps) == (
        "cpu",
        2048,
        4,
    )


def test_nli_kind_is_inferred_from_an_mnli_model_name():
    assert Config.from_env({"BASE_MODEL": "facebook/bart-large-mnli"}).base_model_kind == "nli"


def test_base_version_is_stable_and_readable():
    assert base_model_version(Config.from_env({}).base_model) == "base:all-MiniLM-L6-v2"
    assert base_model_version("facebook/bart-large-mnli") == "base:facebook/bart-large-mnli"


def test_readme_documents_every_variable():
    readme = README.read_text(encoding="utf-8")
    missing = [name for name, _ in Config.documented_variables() if f"`{name}`" not in readme]
    assert not missing, f"README.md does not list {missing}"


def test_readme_documents_every_variable_the_processes_and_compose_read():
    import re

    root = README.parent
    texts = [(root / "docker-compose.yml").read_text(), (root / "Procfile").read_text()]
    names = {name for text in texts for name in re.findall(r"\$\{([A-Z_]+)", text)}
    for script in (root / "scripts").glob("*.py"):
        names |= set(
            re.findall(r"environ(?:\.get|\.setdefault)?\W+\"([A-Z_]+)\"", script.read_text())
        )
    names -= {"PATH"}
    readme = README.read_text(encoding="utf-8")
    missing = sorted(name for name in names if f"`{name}`" not in readme)
    assert not missing, f"README.md does not list {missing}"


def test_the_inference_worker_refuses_a_gpu_it_does_not_have(monkeypatch):
    """SORTLOOP_INFERENCE_DEVICE=cuda on a machine without one: the worker's model says
    so (the task fails with the reason) instead of classifying on the CPU unnoticed."""
    import torch

    from worker import state
    from worker.fine_tuning.devices import DeviceUnavailable

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(
        state, "config", lambda: Config.from_env({"SORTLOOP_INFERENCE_DEVICE": "cuda"})
    )
    monkeypatch.setattr(state, "session_factory", lambda: None)
    state.active_model.cache_clear()
    try:
        with pytest.raises(DeviceUnavailable, match="cuda"):
            state.active_model()
        monkeypatch.setattr(
            state, "config", lambda: Config.from_env({"SORTLOOP_INFERENCE_DEVICE": "auto"})
        )
        assert state.active_model().device == "cpu"
    finally:
        state.active_model.cache_clear()
