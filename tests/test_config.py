"""Config: values are checked when read back, and config.json is written atomically."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from agent.config import config_from_dict, config_to_dict, load_config, make_config, save_config


@pytest.mark.parametrize(
    "section,field,value",
    [
        ("actor", "eta", math.nan),
        ("actor", "eta", math.inf),
        ("train", "train_ratio", math.inf),
        ("model", "free_nats", -math.inf),
        ("train", "eval_rounds", 0),
        ("train", "seed", -1),
        ("train", "action_repeat", 0),
    ],
)
def test_config_from_dict_refuses_bad_values_naming_the_field(section: str, field: str, value: float) -> None:
    data = config_to_dict(make_config("tiny"))
    data[section][field] = value
    with pytest.raises(ValueError, match=rf"{section}\.{field}="):
        config_from_dict(data)


def test_action_repeat_is_a_train_field_of_at_least_one() -> None:
    assert make_config("tiny").train.action_repeat == 1
    assert make_config("tiny", ["train.action_repeat=2"]).train.action_repeat == 2
    with pytest.raises(ValueError, match=r"^train\.action_repeat=0: must be in \[1, 2147483647\]$"):
        make_config("tiny", ["train.action_repeat=0"])


def test_config_from_dict_reads_the_old_eval_games_name_and_checks_it() -> None:
    data = config_to_dict(make_config("tiny"))
    del data["train"]["eval_rounds"]
    data["train"]["eval_games"] = 0
    with pytest.raises(ValueError, match=r"train\.eval_rounds=0"):
        config_from_dict(data)


def test_save_config_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.json"
    save_config(make_config("tiny"), path)
    before = path.read_text()

    def broken_replace(src: object, dst: object) -> None:
        raise OSError("killed while moving the file")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="killed"):
        save_config(make_config("tiny", ["actor.eta=1e-3"]), path)
    monkeypatch.undo()
    assert path.read_text() == before and load_config(path).actor.eta == make_config("tiny").actor.eta
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]  # no tmp file left behind


@pytest.mark.parametrize("text", ["", '{"model": {"deter": 6', "[1, 2]", '{"model": 5}', "\udcff"])
def test_an_unreadable_config_file_is_named(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(ValueError, match=f"^{path}"):
        load_config(path)
