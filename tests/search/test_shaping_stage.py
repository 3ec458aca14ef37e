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
            ppo={"select_terms": 0}, report=False)


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


@pytest.mark.ppo_select
@pytest.mark.parametrize("verdict", ["teaches", "worse", "blind", "partly", "noisy"])
def test_the_potential_is_kept_only_when_ppo_says_it_teaches(tmp_path, monkeypatch, verdict: str) -> None:
    """With PPO in the loop on, the winner trains with and without its potential in one batch; the
    potential stays only when its policy is the more expert-like, or when neither policy comes near
    the expert (the check cannot tell: shaping is for exactly that case). PPO faked: its verdict is
    the input."""
    from types import SimpleNamespace

    from grace.search import ppo_select

    # per seed, with the potential and without; "partly": both below the floor, but the policy without
    # is ahead of the one with beyond the seed noise (the check can tell: it is dropped); "noisy":
    # within the noise on 2 seeds (terminating MountainCar's), so 4 more seeds decide (kept)
    per_with, per_without = {"teaches": ([0.9, 0.9], [0.5, 0.5]), "worse": ([0.1, 0.1], [0.5, 0.5]),
                             "blind": ([0.001, 0.001], [0.0, 0.008]),
                             "partly": ([0.0, 0.0], [0.011, 0.013]),
                             "noisy": ([0.97, 0.12], [0.74, 0.98])}[verdict]
    confirmed = ([0.95, 0.96, 0.97, 0.9], [0.0, 0.0, 0.9, 0.0]) if verdict == "noisy" else (per_with, per_without)
    seeds_without = per_without + (confirmed[1] if verdict in ("noisy", "blind") else [])
    without = sum(seeds_without) / len(seeds_without)

    def fake(task, cfg, sources, data, seed, seeds=None):
        pw, pwo = (per_with, per_without) if seeds is None else confirmed
        per = [pw if "def potential" in s else pwo for s in sources]
        return [SimpleNamespace(ok=True, irl_score=sum(x) / len(x), irl_per_seed=x, error=None,
                                true_return_mean=0.0, env_steps=0) for x in per], 0.1

    async def fake_train(*args):
        return fake(*args)

    monkeypatch.setattr(ppo_select, "enabled", lambda cfg, task: True)
    monkeypatch.setattr(ppo_select, "train_and_score", fake_train)
    cfg = EvolveConfig(task="mountaincar", demos=str(DEMOS / "mountaincar.npz"), out=str(tmp_path / "r")).override(TINY)
    res = grace.evolve(cfg, progress=False)
    program = RewardProgram.from_file(res.best_path)
    record = Archive(tmp_path / "r" / "archive.sqlite", create=False).get_meta("shaping_final")
    kept = verdict in ("teaches", "blind", "noisy")
    assert record["kept"] is kept and record["ppo_check"]["expert_likeness_without"] == pytest.approx(without)
    assert record["ppo_check"]["confirm_seeds"] == (cfg.ppo.select_confirm if verdict in ("noisy", "blind") else 0)
    assert record["uninformative"] is (verdict == "blind")
    assert 0.1 < record["ppo_check"]["expert_likeness_expert"] <= 1.0  # the held-out expert's own
    assert program.has_potential is kept
    text = program.provenance["shaping"].replace("\n", " ")
    if verdict == "teaches":
        assert "kept by PPO in the loop (expert-likeness 0.900 with it, 0.500 without)" in text
    elif verdict == "blind":
        assert "kept: PPO in the loop could not tell (expert-likeness 0.001 with it, 0.004 without" in text
    elif verdict == "worse":
        assert "not kept: PPO on it was less expert-like (0.100 vs 0.500 without)" in text
    elif verdict == "noisy":  # 0.545 vs 0.860 on 2 seeds; 0.812 vs 0.437 on 6
        assert "kept by PPO in the loop (expert-likeness 0.812 with it, 0.437 without)" in text
    else:
        assert "not kept: PPO on it was less expert-like (0.000 vs 0.012 without)" in text
    if not kept:
        assert program.program_id == RewardProgram(res.best.best_source).program_id


def test_a_potential_within_the_margin_is_not_called_less_expert_like() -> None:
    """The provenance says why a potential was dropped: worse, or better by less than the margin."""
    from grace.search.shaping import provenance

    def line(with_: float, without: float) -> str:
        record = {"kept": False, "potential": "|x - c|",
                  "ppo_check": {"expert_likeness_with": with_, "expert_likeness_without": without}}
        return provenance(None, record)["shaping"]

    assert "PPO on it was less expert-like (0.100 vs 0.500 without)" in line(0.1, 0.5)
    assert "PPO on it was not 2% more expert-like (0.994 vs 0.993 without)" in line(0.994, 0.993)
