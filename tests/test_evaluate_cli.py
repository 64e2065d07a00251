"""`hockey-agent eval`: Wilson intervals, the per-side split, bad input."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from agent.cli.main import main
from agent.players.match import RoundOutcome, outcome_rows, wilson


def _eval(*args: str):
    return CliRunner().invoke(main, ["eval", *args])


def _rows(output: str) -> dict[str, list[str]]:
    """The table's body rows, keyed by their label."""
    cells = [[c.strip() for c in line.split("│")] for line in output.splitlines() if "│" in line]
    return {row[0]: row[1:] for row in cells}


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
