"""The league: members, their matches in SQLite, ratings, schedules and parallel evaluation.

    hockey-agent league add NAME PATH        # an .onnx file, run directory or checkpoint
    hockey-agent league eval                 # round robin, games written as they finish
    hockey-agent league show --plot out/lg   # leaderboard, rating history, head-to-head

The league directory defaults to ./runs/league (its database is runs/league/league.db); a new
league starts with every scripted player. Python callers (the self-play loop) use
`league.runner.evaluate`, `league.db.LeagueDB` and `league.members.file_member`.
"""
