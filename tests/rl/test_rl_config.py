"""Config and dataset validation: defaults from the published recipes, errors naming file:line:field."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from qwq_chat.app.cli import cli
from qwq_chat.rl_finetune.config import ConfigError, RLConfig, dump_defaults, load_config
from qwq_chat.rl_finetune.data import read_rows
from typer.testing import CliRunner

ASSETS = Path(__file__).resolve().parents[2] / "assets"


def test_defaults_follow_the_published_recipes() -> None:
    cfg = RLConfig()
    s1 = cfg.stage1
    assert s1.epsilon == 0.2 and s1.epsilon_high == 0.28  # DAPO clip-higher
    assert s1.beta == 0.0  # no KL (DAPO, Dr. GRPO)
    assert 8 <= s1.num_generations <= 16
    assert s1.loss_type == "dapo" and s1.mask_truncated_completions
    assert s1.scale_rewards == "group"
    assert cfg.model.finetune == "lora"
    assert cfg.stage2.max_steps < s1.max_steps  # stage 2 is short
    assert cfg.eval.temperature == 0.6 and cfg.eval.top_p == 0.95  # QwQ model card


def test_every_field_is_documented_and_the_dump_is_a_valid_config(tmp_path: Path) -> None:
    for name, field in RLConfig.model_fields.items():
        if name == "source":
            continue
        for key, sub in field.annotation.model_fields.items():
            assert sub.description, f"{name}.{key} has no description"
    text = dump_defaults()
    data = tomllib.loads(text.replace('""  # unset', '""'))
    assert data["stage1"]["epsilon_high"] == 0.28


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "run.toml"
    p.write_text(text)
    return p


def test_bad_value_names_file_line_and_field(tmp_path: Path) -> None:
    p = _write(tmp_path, '[model]\nbase = "x"\n\n[stage1]\nmax_steps = 10\nepsilon_high = -1\n')
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    msg = str(exc.value)
    assert f"{p}:6" in msg and "stage1.epsilon_high" in msg and "greater than 0" in msg


def test_unknown_field_and_bad_toml_and_group_size(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"run\.toml:2: field stage1\.epsilonhigh: unknown field"):
        load_config(_write(tmp_path, "[stage1]\nepsilonhigh = 0.3\n"))
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(_write(tmp_path, "[stage1\n"))
    with pytest.raises(ConfigError, match="multiple of num_generations"):
        load_config(_write(tmp_path, "[stage1]\nbatch_size = 12\nnum_generations = 8\n"))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.toml")


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, '[run]\noutput_dir = "out"\n'))
    assert cfg.output_dir == (tmp_path / "out").resolve()


def test_shipped_configs_are_valid() -> None:
    configs = sorted((ASSETS / "rl" / "configs").glob("*.toml"))
    assert len(configs) >= 3
    for p in configs:
        cfg = load_config(p)
        for src in cfg.stage1.math_data + cfg.stage1.code_data:
            assert cfg.resolve(src).is_file(), src
    assert {load_config(p).model.finetune for p in configs} == {"lora", "qlora", "full"}


def test_dataset_rows_are_validated_with_file_line_and_field(tmp_path: Path) -> None:
    p = tmp_path / "m.jsonl"
    p.write_text('{"prompt": "1+1?", "answer": 2}\n\n{"prompt": "2+2?"}\n')
    with pytest.raises(ConfigError, match=rf"{p}:3: field answer: Field required"):
        read_rows(p, "math")
    p.write_text(
        '{"prompt": "x", "tests": [{"stdin": "1", "expected_stdout": "1", "assert": "a"}]}\n'
    )
    with pytest.raises(ConfigError, match=r":1: field tests.0: Value error, a test has either"):
        read_rows(p, "code")
    p.write_text("{not json\n")
    with pytest.raises(ConfigError, match=r":1: not valid JSON"):
        read_rows(p, "general")
    p.write_text('{"prompt": "q", "completion": "no close tag"}\n')
    with pytest.raises(ConfigError, match=r":1: field \(row\).*</think>"):
        read_rows(p, "trace")


def test_shipped_sample_datasets_validate() -> None:
    d = ASSETS / "datasets"
    assert read_rows(d / "math_sample.jsonl", "math")[0]["answer"]
    assert read_rows(d / "code_sample.jsonl", "code")[1]["entry_point"] == "is_palindrome"
    assert read_rows(d / "general_sample.jsonl", "general")
    traces = read_rows(d / "cold_start_sample.jsonl", "trace")
    assert all("</think>" in t["completion"] for t in traces)


def test_cli_reports_a_bad_config_without_traceback(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    p = _write(tmp_path, "[cold_start]\nepochs = 0\n")
    r = subprocess.run(
        [sys.executable, "-m", "qwq_chat.app", "rl", "train", str(p)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "300"},
    )
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert f"{p}:2: field cold_start.epochs" in r.stderr


def test_rl_config_command_prints_every_section() -> None:
    out = CliRunner().invoke(cli, ["rl", "config"]).output
    for section in ("[model]", "[stage1]", "[stage2]", "[cold_start]", "[eval]", "[engine]"):
        assert section in out


def test_dry_run_validates_every_dataset_of_a_shipped_config() -> None:
    result = CliRunner().invoke(
        cli, ["rl", "train", str(ASSETS / "rl/configs/qwq32b_lora.toml"), "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert "data: cold_start=4 rows, stage1=11 rows, stage2=12 rows" in result.output


def test_dry_run_names_the_bad_row(tmp_path: Path) -> None:
    bad = tmp_path / "math.jsonl"
    bad.write_text('{"prompt": "1+1?", "answer": "2"}\n{"prompt": "", "answer": "3"}\n')
    cfg = _write(tmp_path, f'[cold_start]\nenabled = false\n[stage1]\nmath_data = ["{bad}"]\n')
    result = CliRunner().invoke(cli, ["rl", "train", str(cfg), "--dry-run"])
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError)
    assert f"{bad}:2: field prompt" in str(result.exception)
