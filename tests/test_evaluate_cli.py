"""`hockey-agent eval`: Wilson intervals, the per-side split, both policies of an agent, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import one_line_error

from agent.cli.main import main
from agent.players.match import RoundOutcome, outcome_rows, wilson


def _eval(*args: str):
    return CliRunner().invoke(main, ["eval", *args], env={"COLUMNS": "200"})  # titles on one line


def _rows(output: str) -> dict[str, list[str]]:
    """The table's body rows, keyed by their label."""
    cells = [[c.strip() for c in line.split("│")] for line in output.splitlines() if "│" in line]
    return {row[0]: row[1:] for row in cells}


def _tables(output: str) -> dict[str, str]:
    """Each table's text by the policy its title names ('' for a title naming none)."""
    tables: dict[str, str] = {}
    label = None
    for line in output.splitlines():
        if " vs " in line and line.strip().endswith(")"):
            title = line.strip()
            label = title.rsplit(", ", 1)[1].removesuffix(" policy)") if title.endswith(" policy)") else ""
            tables[label] = ""
        elif label is not None:
            tables[label] += line + "\n"
    return tables


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory holding a checkpoint of a freshly initialised tiny agent."""
    import torch

    from agent.config import config_to_dict, make_config
    from agent.dreamer.agent import DreamerAgent
    from agent.training import checkpoint

    torch.manual_seed(0)
    agent = DreamerAgent(make_config("tiny")).eval()
    run = tmp_path_factory.mktemp("run")
    checkpoint.save(
        run / checkpoint.CHECKPOINT_FILE,
        {"preset": "tiny", "config": config_to_dict(agent.cfg), "model": agent.state_dict(), "counters": {}},
    )
    return run


DRILL = ("--opponent", "still", "--games", "2", "--mode", "shooting")


def test_wilson_matches_the_textbook_values() -> None:
    assert wilson(0, 10) == pytest.approx((0.0, 0.27754), abs=1e-5)
    assert wilson(5, 10) == pytest.approx((0.23659, 0.76341), abs=1e-5)
    assert wilson(10, 10) == pytest.approx((0.72246, 1.0), abs=1e-5)
    with pytest.raises(ValueError):
        wilson(0, 0)


def test_outcome_rows_split_rounds_by_side_and_starter() -> None:
    rounds = [RoundOutcome(1, True, 1), RoundOutcome(1, False, 0), RoundOutcome(2, True, 1), RoundOutcome(2, False, -1)]
    rows = dict(outcome_rows([1, -1], rounds, by_side=True))
    assert rows["games"] == [1, -1]
    assert rows["rounds"] == [1, 0, 1, -1]
    assert rows["as p1"] == [1, 0] and rows["as p2"] == [1, -1]
    assert rows["starts"] == [1, 1] and rows["receives"] == [0, -1]
    assert [label for label, _ in outcome_rows([1], rounds[:2], by_side=False)] == ["games", "rounds"]
    # a side the agent never played is left out rather than shown as 0 of 0
    assert "as p2" not in dict(outcome_rows([1], rounds[:2], by_side=True))


def test_eval_tabulates_rounds_by_side_and_starter() -> None:
    result = _eval("weak", "--opponent", "still", "--games", "2", "--seed", "3")
    assert result.exit_code == 0, result.output
    rows = _rows(result.output)
    assert rows["games"][0] == "2" and rows["rounds"][0] == "8"
    for half in (("as p1", "as p2"), ("starts", "receives")):
        assert [rows[label][0] for label in half] == ["4", "4"]
        wins = [int(rows[label][1].split()[0]) for label in half]
        assert sum(wins) == int(rows["rounds"][1].split()[0])
    # a player that never moves cannot score: a lost round would mean a side's sign is wrong
    assert [int(rows[label][5].split()[0]) for label in ("as p1", "as p2")] == [0, 0]
    assert int(rows["as p1"][1].split()[0]) >= 1 and int(rows["as p2"][1].split()[0]) >= 1


def test_eval_in_a_drill_has_no_side_rows() -> None:
    result = _eval("still", "--opponent", "still", "--games", "1", "--mode", "shooting")
    assert result.exit_code == 0, result.output
    assert set(_rows(result.output)) == {"games", "rounds"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("weak", "--opponent", "nobody"), "unknown opponent 'nobody'; choices: "),
        (("weak", "--opponent", "still", "--mode", "penalty"), "unknown mode 'penalty'; choices: normal"),
        (("no/such/run", "--opponent", "still"), "no/such/run"),
    ],
)
def test_eval_bad_input_is_a_clear_error(args: tuple[str, ...], message: str) -> None:
    result = _eval(*args)
    assert result.exit_code == 2
    assert message in result.output


def test_eval_reports_the_mean_and_the_sampled_policy_of_a_checkpoint(run_dir: Path) -> None:
    result = _eval(str(run_dir), *DRILL)
    assert result.exit_code == 0, result.output
    tables = _tables(result.output)
    assert list(tables) == ["mean", "sample"]
    for text in tables.values():
        rows = _rows(text)
        assert rows["games"][0] == "2" and rows["rounds"][0] == "8"
    assert "won more games" in result.output or "won as many games" in result.output
    only = _eval(str(run_dir), *DRILL, "--policy", "mean")
    assert only.exit_code == 0 and list(_tables(only.output)) == ["mean"]
    assert _rows(_tables(only.output)["mean"]) == _rows(tables["mean"])


def test_the_sampled_evaluation_repeats_for_a_seed(run_dir: Path) -> None:
    first = _eval(str(run_dir), *DRILL, "--policy", "sample", "--seed", "5")
    assert first.exit_code == 0, first.output
    assert list(_tables(first.output)) == ["sample"]
    assert _eval(str(run_dir), *DRILL, "--policy", "sample", "--seed", "5").output == first.output
    # --stochastic is the old spelling of --policy sample
    assert _eval(str(run_dir), *DRILL, "--stochastic", "--seed", "5").output == first.output


def test_eval_of_an_onnx_file_reports_the_policy_it_was_exported_with(run_dir: Path, tmp_path: Path) -> None:
    from export.onnx_export import export_agent, load_checkpoint_agent

    loaded = load_checkpoint_agent(run_dir)
    mean, sampled = tmp_path / "mean.onnx", tmp_path / "sampled.onnx"
    export_agent(loaded.agent, mean, preset="tiny", train_step=0)
    export_agent(loaded.agent, sampled, preset="tiny", train_step=0, policy="sample")
    result = _eval(str(mean), *DRILL)
    assert result.exit_code == 0, result.output
    assert list(_tables(result.output)) == ["mean"] and "won more" not in result.output
    result = _eval(str(sampled), *DRILL, "--seed", "3")
    assert result.exit_code == 0 and list(_tables(result.output)) == ["sample"]
    assert _eval(str(sampled), *DRILL, "--seed", "3").output == result.output
    refused = _eval(str(mean), *DRILL, "--policy", "both")
    assert refused.exit_code == 2
    assert "acts the policy it was exported with, 'mean'" in one_line_error(refused)


def test_a_scripted_player_has_one_table_and_no_policies() -> None:
    result = _eval("weak", *DRILL)
    assert result.exit_code == 0 and list(_tables(result.output)) == [""]
    refused = _eval("weak", *DRILL, "--policy", "sample")
    assert refused.exit_code == 2 and "scripted players act by their own rules" in one_line_error(refused)
    clash = _eval("weak", *DRILL, "--stochastic", "--policy", "mean")
    assert clash.exit_code == 2 and "--stochastic means --policy sample" in one_line_error(clash)


def _scores(output: str) -> dict[tuple[str, str], list[str]]:
    """The closing table's rows by (agent, policy), in the printed order (dicts keep it)."""
    body = output.split("best worst case first", 1)[1]
    cells = [[c.strip() for c in line.split("│")] for line in body.splitlines() if "│" in line]
    return {(row[0], row[1]): row[2:] for row in cells}  # the header's rules are not │


def test_several_agents_and_opponents_are_scored_and_ranked_by_their_worst_case() -> None:
    args = ("--opponent", "still,random", "--games", "2", "--seed", "7")
    result = _eval("still", "weak", *args, "--brief")
    assert result.exit_code == 0, result.output
    assert " vs " not in result.output  # --brief: the closing table alone
    scores = _scores(result.output)
    assert list(scores) == [("weak", "-"), ("still", "-")]  # still never scores: it ranks last
    for (agent, _), cells in scores.items():
        still, random_, worst, mean = (float(c) for c in cells)
        assert worst == min(still, random_) and mean == pytest.approx((still + random_) / 2, abs=1e-3)
        # each score is the detailed table's: (won + drawn / 2) / rounds, on the same seeds
        for opp, value in (("still", still), ("random", random_)):
            rounds = _rows(_eval(agent, "--opponent", opp, "--games", "2", "--seed", "7").output)["rounds"]
            won, drawn = (int(rounds[i].split()[0]) for i in (1, 3))
            assert value == pytest.approx((won + drawn / 2) / int(rounds[0]), abs=1e-3)
    assert float(scores[("still", "-")][0]) == 0.5  # two players that never move draw every round
    # without --brief the detailed tables come first, one per agent and opponent
    full = _eval("still", "weak", *args)
    assert full.exit_code == 0 and full.output.count(" vs ") == 4 and _scores(full.output) == scores


def test_a_sampled_policy_plays_each_opponent_as_if_it_came_first(run_dir: Path) -> None:
    pair = _eval(str(run_dir), "--opponent", "still,weak", "--games", "2", "--mode", "shooting", "--policy", "sample")
    alone = _eval(str(run_dir), "--opponent", "weak", "--games", "2", "--mode", "shooting", "--policy", "sample")
    assert pair.exit_code == 0 and alone.exit_code == 0, pair.output + alone.output
    assert _scores(pair.output)[(str(run_dir), "sample")][1] == _scores_of_one(alone.output)


def _scores_of_one(output: str) -> str:
    rounds = _rows(output)["rounds"]
    won, drawn = (int(rounds[i].split()[0]) for i in (1, 3))
    return f"{(won + drawn / 2) / int(rounds[0]):.3f}"


@pytest.mark.parametrize(
    ("spec", "message"),
    [("weak,nobody", "unknown opponent 'nobody'"), ("weak,weak", "named twice"), (",", "at least one opponent")],
)
def test_a_bad_opponent_list_is_refused_before_any_game(spec: str, message: str) -> None:
    result = _eval("weak", "--opponent", spec, "--games", "1")
    assert result.exit_code == 2 and message in one_line_error(result)
