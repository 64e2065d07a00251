"""Config: values are checked when read back, and config.json is written atomically."""

from __future__ import annotations

import math

import pytest

from agent.config import config_from_dict, config_to_dict, make_config


@pytest.mark.parametrize(
    "section,field,value",
    [
        ("actor", "eta", math.nan),
        ("actor", "eta", math.inf),
        ("train", "train_ratio", math.inf),
        ("model", "free_nats", -math.inf),
        ("train", "eval_rounds", 0),
        ("train", "seed", -1),
    ],
)
def test_config_from_dict_refuses_bad_values_naming_the_field(section: str, field: str, value: float) -> None:
    data = config_to_dict(make_config("tiny"))
    data[section][field] = value
    with pytest.raises(ValueError, match=rf"{section}\.{field}="):
        config_from_dict(data)


def test_config_from_dict_reads_the_old_eval_games_name_and_checks_it() -> None:
    data = config_to_dict(make_config("tiny"))
    del data["train"]["eval_rounds"]
    data["train"]["eval_games"] = 0
    with pytest.raises(ValueError, match=r"train\.eval_rounds=0"):
        config_from_dict(data)
