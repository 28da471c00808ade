"""verl's own config accepts what `rl train --engine verl` writes (plain and multi-turn with the
chat's tools); a key verl does not know or a value of the wrong type fails; our reward function
loads through verl's custom-reward loader. Needs verl installed (`pip install --no-deps
verl==0.9.1`; its config files and loader are all this reads, no GPU or Ray)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from qwq_chat.rl_finetune.config import RLConfig

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("verl") is None,
    reason="verl is not installed (pip install --no-deps verl==0.9.1)",
)
ASSETS = Path(__file__).resolve().parents[2] / "assets"


def _write(tmp_path: Path, tools: list[str]) -> Path:
    from qwq_chat.rl_finetune.verl import write_verl_run

    cfg = RLConfig.model_validate(
        {
            "run": {"output_dir": str(tmp_path / "run")},
            "stage1": {
                "math_data": [str(ASSETS / "datasets/math_sample.jsonl")],
                "code_data": [str(ASSETS / "datasets/code_sample.jsonl")],
                "sandbox_url": "http://10.0.0.5:8080",
                "overlong_buffer": 4096,
                "tools": tools,
                "max_tool_calls": 3,
            },
            "engine": {"name": "verl", "verl_nodes": 2},
        }
    )
    return write_verl_run(cfg).parent


@pytest.mark.parametrize("tools", [[], ["python", "calculator"]], ids=["plain", "multi-turn"])
def test_verl_config_accepts_every_written_override(tmp_path: Path, tools: list[str]) -> None:
    from qwq_chat.rl_finetune.verl_check import check_run

    cfg = check_run(_write(tmp_path, tools))
    assert cfg["algorithm"]["adv_estimator"] == "grpo"
    assert cfg["actor_rollout_ref"]["actor"]["clip_ratio_high"] == 0.28
    assert cfg["reward"]["reward_manager"]["name"] == "dapo"
    assert cfg["reward"]["reward_kwargs"]["overlong_buffer_cfg"]["len"] == 4096
    multi = cfg["actor_rollout_ref"]["rollout"]["multi_turn"]
    assert multi["enable"] is bool(tools)
    if tools:
        assert multi["max_assistant_turns"] == 4 and multi["format"] == "hermes"
        assert cfg["actor_rollout_ref"]["rollout"]["agent"]["default_agent_loop"] == "tool_agent"


def test_wrong_key_or_type_fails(tmp_path: Path) -> None:
    from qwq_chat.rl_finetune.verl_check import VerlConfigError, check_run

    run = _write(tmp_path, [])
    good = json.loads((run / "overrides.json").read_text())
    for bad, match in (
        ("actor_rollout_ref.actor.clip_ratio_hgih=0.28", "no key"),
        ("custom_reward.path=/x.py", "no key"),
        ("actor_rollout_ref.actor.use_kl_loss=maybe", "expects bool"),
        ("trainer.nnodes=[1,2]", "expects int"),
    ):
        (run / "overrides.json").write_text(json.dumps([*good, bad]))
        with pytest.raises(VerlConfigError, match=match):
            check_run(run)


def test_reward_loads_through_verls_loader_and_scores(tmp_path: Path) -> None:
    from qwq_chat.rl_finetune.verl_check import compose, load_reward

    run = _write(tmp_path, [])
    fn = load_reward(compose(json.loads((run / "overrides.json").read_text())))
    assert fn.__name__ == "compute_score"
    assert fn("math", "x\n</think>\n\n\\boxed{12}", "12", None) == 1.0
    assert fn("math", "x\n</think>\n\n\\boxed{13}", "12", None) == 0.0


def test_multi_turn_tool_file_has_the_chats_schemas_and_row_stdin(tmp_path: Path) -> None:
    import pyarrow.parquet as pq
    import yaml
    from qwq_chat.app.tools.registry import build_registry
    from qwq_chat.rl_finetune.verl_check import check_tool_config

    run = _write(tmp_path, ["python", "calculator"])
    schemas = check_tool_config(run / "tool_config.yaml")
    assert [s.function.name for s in schemas] == ["python", "calculator"]
    entries = yaml.safe_load((run / "tool_config.yaml").read_text())["tools"]
    assert [e["tool_schema"] for e in entries] == build_registry(["python", "calculator"]).schemas()
    assert {e["config"]["sandbox_url"] for e in entries} == {"http://10.0.0.5:8080"}
    row = pq.read_table(run / "train.parquet").to_pylist()[0]
    assert row["extra_info"]["tools_kwargs"]["python"]["create_kwargs"] == {"stdin": ""}
    # A schema verl rejects fails the check.
    entries[0]["tool_schema"]["function"].pop("name")
    (run / "tool_config.yaml").write_text(yaml.safe_dump({"tools": entries}))
    with pytest.raises(Exception, match="name"):
        check_tool_config(run / "tool_config.yaml")
