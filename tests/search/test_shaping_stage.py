"""`fit.shaping`: when the search ends, the winner gets the potential learned from the demos."""

from __future__ import annotations

import json

import pytest

import grace
from grace.config import EvolveConfig
from grace.program import RewardProgram
from grace.search.archive import Archive
from tests.conftest import DEMOS, run_cli

TINY = dict(search={"generations": 1, "population": 3, "islands": 1}, data={"random_negative_episodes": 12},
            report=False)


def test_the_winner_carries_the_learned_potential(tmp_path) -> None:
    cfg = EvolveConfig(task="mountaincar", demos=str(DEMOS / "mountaincar.npz"), out=str(tmp_path / "r")).override(TINY)
    res = grace.evolve(cfg, progress=False)
    program = RewardProgram.from_file(res.best_path).validate(grace.get_task("mountaincar").schema)
    assert program.has_potential and "potential" not in res.best.best_source  # the archive keeps the winner as found
    assert "learned from the demos" in program.provenance["shaping"]
    record = Archive(tmp_path / "r" / "archive.sqlite", create=False).get_meta("shaping_final")
    assert record["program"] == res.best.id and record["potential_progress"] >= 0.5
    # what the file says is what `grace eval` measures on it
    out = run_cli("eval", str(res.best_path), "--json")
    assert out.returncode == 0, out.stderr
    scored = json.loads(out.stdout)
    assert scored["potential_progress_heldout"] > 0.3
    assert f"{scored['fitness']:.4f} train" in program.provenance["fitness"]


def test_shaping_off_writes_the_winner_as_found(tmp_path) -> None:
    cfg = EvolveConfig(task="mountaincar", demos=str(DEMOS / "mountaincar.npz"), out=str(tmp_path / "r")).override(TINY)
    res = grace.evolve(cfg.override({"fit": {"shaping": False}}), progress=False)
    program = RewardProgram.from_file(res.best_path)
    assert not program.has_potential and "shaping" not in program.provenance
    assert program.program_id == RewardProgram(res.best.best_source).program_id
    with pytest.raises(KeyError):
        _ = program.provenance["shaping"]
