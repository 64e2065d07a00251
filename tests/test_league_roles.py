"""A self-play league of roles: who plays whom, exploiters snapshotted and reset, turns, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import error_line

from agent.config import learner_seed, make_config
from selfplay.roles import Turns, plan_learners, reset_drawn


def test_the_plan_gives_each_lineage_its_seed_and_reward_and_each_role_its_share() -> None:
    cfg = make_config(
        "tiny", ["train.seed=3", "train.lineages=2", "train.main_exploiters=1", "train.league_exploiters=1"]
    )
    specs = plan_learners(cfg)
    assert [s.name for s in specs] == ["main-0", "main-1", "main-exploiter-0", "league-exploiter-0"]
    assert [s.seed for s in specs] == [3, learner_seed(3, 1), learner_seed(3, 2), learner_seed(3, 3)]
    assert len({s.seed for s in specs}) == 4
    assert [s.reward for s in specs] == ["sparse", "mix", "sparse", "sparse"]  # exploiters: train.reward
    assert [s.follows for s in specs] == [None, None, "main-0", "main-0"]
    assert [s.share for s in specs] == pytest.approx([0.25, 0.25, 0.25, 0.25])
    # a role that is absent gives its share to the others
    alone = plan_learners(make_config("tiny", ["train.main_exploiters=2"]))
    assert [(s.name, s.share) for s in alone] == [
        ("main-0", pytest.approx(2 / 3)),
        ("main-exploiter-0", pytest.approx(1 / 6)),
        ("main-exploiter-1", pytest.approx(1 / 6)),
    ]


def test_bad_roles_are_refused_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from agent.cli.train import train

    with pytest.raises(ValueError, match="main_exploiter_share > 0"):
        make_config("tiny", ["train.main_exploiters=1", "train.main_exploiter_share=0"])
    with pytest.raises(ValueError, match="needs train.main_share > 0"):
        make_config("tiny", ["train.lineages=2", "train.main_share=0"])
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(train, ["--selfplay", "--set", "train.lineage_rewards=sparse,dense"])
    assert error_line(res.output).endswith(
        "unknown lineage reward 'dense'; choices: sparse, shaped, mix (train.lineage_rewards)"
    )
    assert not (tmp_path / "runs").exists()


def test_reset_draws_are_reproducible_and_follow_the_chance() -> None:
    draws = [reset_drawn(5, 3, k, 0.25) for k in range(2000)]
    assert draws == [reset_drawn(5, 3, k, 0.25) for k in range(2000)]
    assert np.mean(draws) == pytest.approx(0.25, abs=0.03)
    assert not any(reset_drawn(5, 3, k, 0.0) for k in range(50)) and all(reset_drawn(5, 3, k, 1.0) for k in range(50))


def _play(turns: Turns, steps: dict[str, int], count: int, overshoot: int = 4) -> list[str]:
    """Play `count` fake turns: each learner steps past its turn's end by `overshoot`."""
    order = []
    for _ in range(count):
        name, end = turns.begin(steps)
        steps[name] = end + overshoot
        turns.finish()
        order.append(name)
    return order


def test_turns_follow_the_shares_and_survive_a_resume() -> None:
    shares = {"main-0": 0.5, "main-exploiter-0": 0.25, "league-exploiter-0": 0.25}
    turns = Turns(shares, turn_steps=100)
    steps = dict.fromkeys(shares, 0)
    order = _play(turns, steps, 40)
    assert order[:8] == ["main-0", "main-exploiter-0", "league-exploiter-0", "main-0"] * 2
    assert [order.count(n) for n in shares] == [20, 10, 10]
    assert turns.taken == {"main-0": 20, "main-exploiter-0": 10, "league-exploiter-0": 10}

    # a run killed in the middle of its 18th turn continues that turn, then the same order
    again = Turns(shares, turn_steps=100)
    steps = dict.fromkeys(shares, 0)
    assert _play(again, steps, 17) == order[:17]
    name, end = again.begin(steps)
    saved = json.loads(json.dumps(again.state_dict()))
    steps[name] += 37  # part of the turn was played and checkpointed
    resumed = Turns(shares, turn_steps=100)
    resumed.load_state_dict(saved)
    assert resumed.begin(steps) == (name, end)
    steps[name] = end + 4
    resumed.finish()
    assert [name, *_play(resumed, steps, 22)] == order[17:]
    assert resumed.taken == turns.taken

    # learners that are done get no turn; None when all are
    assert resumed.begin(steps, done={"main-0"})[0] != "main-0"
    resumed.finish()
    assert resumed.begin(steps, done=set(shares)) is None
