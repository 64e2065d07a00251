"""A self-play league of roles: who plays whom, exploiters snapshotted and reset, turns, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import error_line, write_agent_file

from agent.config import learner_seed, make_config
from league.db import LeagueDB
from league.members import LeagueError, Member
from selfplay.loop import SELF, LeagueSampler
from selfplay.roles import LEAGUE_STATE, Turns, plan_learners, reset_drawn

torch.set_num_threads(1)

# the tiny preset, a few hundred env steps, one rating game per pair
TINY_LEAGUE = [
    "train.prefill=120",
    "train.snapshot_every=240",
    "train.snapshot_games=1",
    "train.worst_min_games=1",
    "train.eval_every=0",
    "train.checkpoint_every=0",
    "train.envs=4",
    "train.train_ratio=16",
    "train.log_every=5",
    "train.device=cpu",
    "train.threads=1",  # spinning OpenMP threads crawl when another job holds a core
    "train.turn_steps=120",
]


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


def _league_with_snapshots(league_dir: Path, agent_file: Path) -> None:
    """A league holding two snapshots of main-0, one of main-1 and an external agent (all one small graph)."""
    from league.members import scripted_members

    def snap(name: str, parent: str, step: int, created: float) -> Member:
        return Member(name, "snapshot", str(agent_file), parent, step, created)

    with LeagueDB(league_dir, create=True) as db:
        db.start_with(scripted_members())
        db.add_members(
            [
                snap("run-main-0-0", "run/main-0", 0, 1e9),
                snap("run-main-0-160", "run/main-0", 160, 1e9 + 1),
                snap("run-main-1-0", "run/main-1", 0, 1e9 + 2),
                Member("theirs", "external", str(agent_file), None, None, 1e9 + 3),
            ]
        )


def test_each_role_meets_the_opponents_its_role_says(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from agent.dreamer.agent import DreamerAgent
    from agent.players.scripted import SCRIPTED

    league_dir = tmp_path / "league"
    _league_with_snapshots(league_dir, write_agent_file(tmp_path / "agent.onnx"))
    cfg = make_config("tiny", ["train.latest_share=0.3", "train.scripted_share=0.3"])
    learner = SimpleNamespace(agent=DreamerAgent(cfg))

    exploiter = LeagueSampler(cfg, league_dir, role="main-exploiter", target="run/main-0")
    exploiter.bind(learner)
    assert {exploiter.sample(i % 4)[0] for i in range(300)} == {"run-main-0-160"}  # its main's latest only
    _, player = exploiter.sample(0)
    player.reset()
    assert np.all(np.abs(player.act(np.zeros(18))) <= 1)
    with LeagueDB(league_dir) as db:  # main-0 is snapshotted again: the exploiter follows
        newest = Member("run-main-0-320", "snapshot", str(tmp_path / "agent.onnx"), "run/main-0", 320, 1e9 + 4)
        db.add_members([newest])
    exploiter.add(newest)
    assert {exploiter.sample(0)[0] for _ in range(100)} == {"run-main-0-320"}
    exploiter.report("run-main-0-160", 1)  # a round that began against the old target still counts
    assert list(exploiter.outcomes["run-main-0-160"]) == [1]
    restored = LeagueSampler(cfg, league_dir, role="main-exploiter", target="run/main-0")
    restored.load_state_dict(exploiter.state_dict())
    assert restored.pfsp.names() == ("run-main-0-320",) and restored.outcomes == exploiter.outcomes
    orphan = LeagueSampler(cfg, league_dir, role="main-exploiter", target="run/main-7")
    with pytest.raises(LeagueError, match="run/main-7 has no snapshot in the league"):
        orphan.sample(0)

    league_exploiter = LeagueSampler(cfg, league_dir, role="league-exploiter")
    league_exploiter.bind(learner)
    seen = [league_exploiter.sample(i % 4)[0] for i in range(2000)]
    assert SELF not in seen and league_exploiter.probabilities()[SELF] == 0.0
    assert set(seen) == {*SCRIPTED, "run-main-0-0", "run-main-0-160", "run-main-0-320", "run-main-1-0", "theirs"}
    assert sum(n in SCRIPTED for n in seen) / len(seen) == pytest.approx(0.3, abs=0.04)  # the rest: the league

    main = LeagueSampler(cfg, league_dir)
    main.bind(learner)
    seen = [main.sample(0)[0] for _ in range(2000)]
    assert seen.count(SELF) / len(seen) == pytest.approx(0.3, abs=0.04)
    assert {"strong", "run-main-1-0", "theirs", "run-main-0-0"} <= set(seen)


def test_beaten_needs_enough_rounds_won_against_every_opponent(tmp_path: Path) -> None:
    league_dir = tmp_path / "league"
    _league_with_snapshots(league_dir, write_agent_file(tmp_path / "agent.onnx"))
    cfg = make_config("tiny", ["train.exploiter_games=10"])
    sampler = LeagueSampler(cfg, league_dir, role="main-exploiter", target="run/main-0")
    for outcome in [-1] + [0] * 2 + [1] * 6:  # 9 rounds: too few
        sampler.report("run-main-0-160", outcome)
    assert not sampler.beaten(0.6)
    sampler.report("run-main-0-160", 0)  # 6 of 10 won, the draws are no wins
    assert sampler.beaten(0.6) and not sampler.beaten(0.7)
    sampler.report("run-main-0-160", 1)  # the window moves past the loss: 7 of the last 10
    assert sampler.beaten(0.7)
    sampler.forget(results=False)
    assert not sampler.beaten(0.1)


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


def test_an_exploiter_that_beats_its_target_is_snapshotted_and_reset(tmp_path: Path) -> None:
    """Driven by a made-up stream of outcomes instead of real games."""
    from selfplay.league_loop import League

    cfg = make_config(
        "tiny",
        [*TINY_LEAGUE, "train.main_exploiters=1", "train.league_exploiters=1", "train.exploiter_games=10",
         "train.exploiter_steps=0", "train.league_exploiter_reset=0", "train.steps=480"],
    )  # fmt: skip
    league = League(cfg, tmp_path / "run", preset="tiny", progress=False)
    try:
        main, mexp, lexp = (league.learners[n] for n in ("main-0", "main-exploiter-0", "league-exploiter-0"))
        for name, p in main.trainer.agent.state_dict().items():  # every exploiter starts as its main agent
            assert torch.equal(p, mexp.trainer.agent.state_dict()[name]) and torch.equal(
                p, lexp.trainer.agent.state_dict()[name]
            )
        league.start()  # main-0 is frozen at env step 0: the main exploiter's target
        target = mexp.sampler.target_member()
        assert target == "run-main-0-0"
        assert "worst" in main.trainer.status() and "main-0" in main.trainer.status()
        with torch.no_grad():  # the main agent learns on
            for p in main.trainer.agent.parameters():
                p.add_(0.01)

        for outcome in [1] * 6 + [0] * 3 + [-1]:  # 6 of 10 won: not yet
            mexp.sampler.report(target, outcome)
        league.check_exploiter(mexp)
        with LeagueDB(league.league_dir) as db:
            assert [m.name for m in db.members() if m.kind == "snapshot"] == ["run-main-0-0"]
        for _ in range(7):  # 7 of the last 10 won: beaten
            mexp.sampler.report(target, 1)
        league.check_exploiter(mexp)
        with LeagueDB(league.league_dir) as db:
            frozen = db.member("run-main-exploiter-0-0")
        assert frozen.kind == "snapshot" and frozen.parent_run == "run/main-exploiter-0"
        for name, p in main.trainer.agent.state_dict().items():  # reset to the main agent's current weights
            assert torch.equal(p, mexp.trainer.agent.state_dict()[name]), name
        assert mexp.sampler.outcomes == {} and not mexp.sampler.beaten(0.7)
        assert league.counters["main-exploiter-0"].snapshots == league.counters["main-exploiter-0"].resets == 1
        assert (tmp_path / "run" / "main-exploiter-0" / "checkpoint.pt").is_file()  # the reset is saved

        # the league exploiter beats every member: snapshotted, kept (reset chance 0)
        before = {k: v.clone() for k, v in lexp.trainer.agent.state_dict().items()}
        assert "run-main-exploiter-0-0" in lexp.sampler.pfsp.names()  # the new member is its opponent
        for name in lexp.sampler.pfsp.names()[:-1]:
            for _ in range(10):
                lexp.sampler.report(name, 1)
        league.check_exploiter(lexp)
        assert league.counters["league-exploiter-0"].snapshots == 0  # one member not beaten yet
        for _ in range(10):
            lexp.sampler.report(lexp.sampler.pfsp.names()[-1], 1)
        league.check_exploiter(lexp)
        with LeagueDB(league.league_dir) as db:
            assert db.member("run-league-exploiter-0-0").parent_run == "run/league-exploiter-0"
        assert all(torch.equal(v, before[k]) for k, v in lexp.trainer.agent.state_dict().items())
        assert league.counters["league-exploiter-0"].resets == 0 and lexp.sampler.outcomes == {}
        rows = [json.loads(line) for line in (tmp_path / "run" / "main-0" / "metrics.jsonl").read_text().splitlines()]
        league_rows = [r for r in rows if r["kind"] == "league"]
        assert league_rows and "league/worst_win" in league_rows[0]
    finally:
        league.close()


@pytest.mark.slow
def test_a_tiny_league_runs_end_to_end_and_resumes(tmp_path: Path) -> None:
    """One learner of each role through `train --selfplay`, then the same command with more steps."""
    from click.testing import CliRunner

    from agent.cli.train import train
    from agent.training.checkpoint import load
    from export.runtime import OnnxAgent

    run = tmp_path / "run"
    roles = ["train.main_exploiters=1", "train.league_exploiters=1", "train.exploiter_steps=120"]
    base = ["--selfplay", "--preset", "tiny", "--run-dir", str(run), "--no-progress"]
    sets = [a for o in [*TINY_LEAGUE, *roles] for a in ("--set", o)]
    first = CliRunner().invoke(train, [*base, *sets, "--set", "train.steps=480"])
    assert first.exit_code == 0, first.output
    state = json.loads((run / LEAGUE_STATE).read_text())
    assert state["turns"]["taken"] == {"main-0": 2, "main-exploiter-0": 1, "league-exploiter-0": 1}
    assert state["turns"]["current"] is None

    again = CliRunner().invoke(train, [*base, *sets, "--set", "train.steps=960"])
    assert again.exit_code == 0, again.output
    assert "holds a run: continuing it" in again.output
    assert "champion candidate" in again.output
    steps = {name: load(run / name)["counters"]["env_steps"] for name in ("main-0", "main-exploiter-0",
                                                                         "league-exploiter-0")}  # fmt: skip
    assert steps == {"main-0": 480, "main-exploiter-0": 240, "league-exploiter-0": 240}
    state = json.loads((run / LEAGUE_STATE).read_text())
    assert state["turns"]["taken"] == {"main-0": 4, "main-exploiter-0": 2, "league-exploiter-0": 2}
    assert state["exploiters"]["main-exploiter-0"] == {"since": 240, "snapshots": 2, "resets": 2}
    with LeagueDB(run / "league") as db:
        members = db.members()
        games = db.games()
    snapshots = {
        role: sorted(m.step for m in members if m.parent_run == f"run/{role}")
        for role in ("main-0", "main-exploiter-0", "league-exploiter-0")
    }
    assert snapshots == {"main-0": [0, 240, 480], "main-exploiter-0": [120, 240], "league-exploiter-0": [120, 240]}
    for m in members:  # every member was rated against every other
        assert sum(m.name in (g.player1, g.player2) for g in games) == len(members) - 1
    card = json.loads((run / "champion.json").read_text())
    assert card["role"] == "main" and card["parent_run"] == "run/main-0"
    assert OnnxAgent(run / "champion.onnx").train_step == card["step"]
    rows = [json.loads(line) for line in (run / "main-0" / "metrics.jsonl").read_text().splitlines()]
    league_rows = [r for r in rows if r["kind"] == "league"]
    assert [r["step"] for r in league_rows] == [0, 240, 480]
    assert all("league/worst_win" in r and any(k.startswith("league/worst_opponent/") for k in r) for r in league_rows)


def test_a_league_and_a_single_main_run_keep_to_their_own_run_directories(tmp_path: Path) -> None:
    from selfplay.league_loop import run_league
    from selfplay.run import run_selfplay

    single = tmp_path / "single"
    single.mkdir()
    (single / "checkpoint.pt").write_bytes(b"")
    cfg = make_config("tiny", ["train.main_exploiters=1"])
    with pytest.raises(ValueError, match="holds the run of one main agent"):
        run_league(cfg, single)
    league = tmp_path / "league"
    league.mkdir()
    (league / LEAGUE_STATE).write_text("{}")
    with pytest.raises(ValueError, match="holds a league of roles"):
        run_selfplay(make_config("tiny"), league)
