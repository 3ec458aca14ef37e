"""PPO in the loop (grace/search/ppo_select.py): a round's winner is the top candidate whose reward
trains the most expert-like policy; the choice is persisted, written to best_reward.py, shown by
`grace show`, and kept by a resume."""

from __future__ import annotations

import dataclasses

import pytest

import grace
from grace.config import EvolveConfig
from grace.program import RewardProgram
from grace.search.archive import Archive
from grace.search.ppo_select import enabled
from grace.tasks import get_task
from tests.conftest import DEMOS, run_cli

SMALL = {"search.generations": 1, "search.population": 4, "search.islands": 1, "sandbox.workers": 2,
         "ppo.select_top": 3, "ppo.select_steps": 4096, "ppo.seeds": 1}


def test_enabled_only_with_a_jax_env_an_offline_fitness_and_k_at_least_2() -> None:
    cfg = EvolveConfig()
    assert enabled(cfg, get_task("cartpole"))
    assert not enabled(cfg.override({"ppo.select_top": 0}), get_task("cartpole"))
    assert not enabled(cfg.override({"ppo.select_top": 1}), get_task("cartpole"))
    assert not enabled(cfg.override({"fitness.kind": "ppo"}), get_task("cartpole"))
    assert not enabled(cfg, dataclasses.replace(get_task("cartpole"), make_jax_env=None))


@pytest.mark.ppo_select
def test_the_winner_is_chosen_by_ppo_persisted_and_kept_on_resume(tmp_path) -> None:
    run = tmp_path / "r"
    cfg = EvolveConfig(task="cartpole", demos=str(DEMOS / "cartpole.npz"), out=str(run), report=False).override(SMALL)
    res = grace.evolve(cfg, progress=False)
    archive = Archive(run / "archive.sqlite", create=False)
    rec = archive.get_meta("ppo_select_r0")
    top = archive.top(3)
    archive.close()
    assert rec is not None and len(rec["candidates"]) == 3 and rec["steps"] == 4096 and rec["seconds"] > 0
    assert [c["row"] for c in rec["candidates"]] == [r.id for r in top]  # the top 3 distinct, in offline order
    liked = [c for c in rec["candidates"] if c["expert_likeness"] is not None]
    assert liked and rec["winner"] == max(liked, key=lambda c: (c["expert_likeness"], -c["offline_rank"]))["row"]
    assert res.best is not None and res.best.id == rec["winner"]
    text = (run / "best_reward.py").read_text()
    assert "selected by: PPO in the loop" in text
    assert RewardProgram(text).program_id == res.best.program_id
    shown = run_cli("show", str(run), "--no-code")
    assert shown.returncode == 0 and "PPO in the loop, round 0" in shown.stdout and "yes" in shown.stdout
    # a resume of the finished run keeps the persisted choice (PPO does not train again)
    again = grace.evolve(resume=True, out=str(run), progress=False)
    assert again.best is not None and again.best.id == rec["winner"]
