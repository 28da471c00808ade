"""Check a written verl run against verl itself (its config tree, reward loader, tool schema).

Without importing `verl` (its package import needs Ray, a CUDA-cluster dependency): verl ships
the fully composed PPO trainer config as `trainer/config/_generated_ppo_trainer.yaml` (what
`python -m verl.trainer.main_ppo` composes from `ppo_trainer.yaml` before overrides); we apply
our overrides to it as Hydra would (a key without `+` must exist; values parsed as YAML) and
reject a value whose type differs from verl's default. The reward function is loaded through
verl's own loader (`verl/utils/import_utils.py:load_extern_object`, stdlib only), and tool
schemas are validated with verl's `OpenAIFunctionToolSchema` (`verl/tools/schemas.py`).
(Hydra's and OmegaConf's grammars need antlr4 4.9, which math-verify's antlr4 4.13 excludes in
one environment, so the YAML is read as plain data; `${...}` interpolations take any value.)
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from qwq_chat.app.errors import UserError


class VerlConfigError(UserError):
    """An override or file verl would reject."""


def verl_root() -> Path:
    spec = importlib.util.find_spec("verl")
    if spec is None or not spec.submodule_search_locations:
        raise VerlConfigError("verl is not installed (pip install --no-deps verl==0.9.1)")
    return Path(list(spec.submodule_search_locations)[0])


def _load_file(relative: str, name: str) -> ModuleType:
    """One of verl's modules by file path, without running verl/__init__.py."""
    path = verl_root() / relative
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def base_config() -> dict[str, Any]:
    import yaml

    path = verl_root() / "trainer" / "config" / "_generated_ppo_trainer.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8"))


_MISSING = object()


def _select(cfg: dict[str, Any], key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _update(cfg: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node = cfg
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def compose(overrides: list[str]) -> dict[str, Any]:
    """verl's PPO config with `overrides` applied; VerlConfigError on an unknown key or a type
    verl's default does not have."""
    import yaml

    cfg = base_config()
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise VerlConfigError(f"override {item!r} is not KEY=VALUE")
        value = _parse(text, yaml)
        if key.startswith("+"):
            _update(cfg, key[1:], value)
            continue
        default = _select(cfg, key)
        if default is _MISSING:
            raise VerlConfigError(f"verl's PPO config has no key {key!r} (override {item!r})")
        _check_type(key, default, value)
        _update(cfg, key, value)
    return cfg


def _parse(text: str, yaml: Any) -> Any:
    """A value as Hydra's grammar reads it: numbers (1e-06 too), booleans, null, lists, text."""
    if not text:
        return ""
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    return yaml.safe_load(text)


def _check_type(key: str, default: Any, value: Any) -> None:
    if default is None or value is None or (isinstance(default, str) and "${" in default):
        return  # unset, or an interpolation: verl takes any value there
    if default == "???":
        return
    ok = {
        bool: lambda v: isinstance(v, bool),
        # verl's YAML writes whole-number defaults for float fields (top_p: 1), so numbers match
        int: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        str: lambda v: isinstance(v, (str, int, float)) and not isinstance(v, bool),
        list: lambda v: isinstance(v, list),
        dict: lambda v: isinstance(v, dict),
    }
    if not ok.get(type(default), lambda v: True)(value):
        raise VerlConfigError(
            f"{key}: verl expects {type(default).__name__} (default {default!r}), got {value!r}"
        )


def load_reward(cfg: Any) -> Any:
    """The reward function named by `reward.custom_reward_function`, through verl's loader."""
    section = cfg["reward"]["custom_reward_function"]
    if not section.get("path"):
        raise VerlConfigError("reward.custom_reward_function.path is not set")
    loader = _load_file("utils/import_utils.py", "_verl_import_utils")
    return loader.load_extern_object(module_path=section["path"], object_name=section["name"])


def check_tool_config(path: Path) -> list[Any]:
    """verl's multi-turn tool file: each entry a native tool whose schema verl accepts and whose
    class is defined in the named module file."""
    import ast

    import yaml

    schemas = _load_file("tools/schemas.py", "_verl_tool_schemas")
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    out = []
    for entry in data["tools"]:
        kind = entry["config"]["type"]
        if kind != "native":
            raise VerlConfigError(f"{path}: tool type {kind!r}; verl knows 'native'")
        schema = schemas.OpenAIFunctionToolSchema.model_validate(entry["tool_schema"])
        module, _, cls = entry["class_name"].rpartition(".")
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            raise VerlConfigError(f"{path}: no module {module!r} for {entry.class_name}")
        tree = ast.parse(Path(spec.origin).read_text())
        if not any(isinstance(n, ast.ClassDef) and n.name == cls for n in tree.body):
            raise VerlConfigError(f"{path}: {module} defines no class {cls}")
        out.append(schema)
    return out


def check_run(verl_dir: Path) -> Any:
    """Everything `rl train --engine verl` wrote under RUN/verl/, checked; returns the config."""
    import json

    overrides = json.loads((Path(verl_dir) / "overrides.json").read_text())
    cfg = compose(overrides)
    load_reward(cfg)
    tool_file = cfg["actor_rollout_ref"]["rollout"]["multi_turn"]["tool_config_path"]
    if tool_file:
        check_tool_config(Path(tool_file))
    return cfg
