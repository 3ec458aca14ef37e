"""A run's negative sets (grace/search/negatives.py)."""

from __future__ import annotations

from grace.search.negatives import negative_sets


def test_negative_files_join_the_random_negatives_instead_of_replacing_them(tmp_path) -> None:
    """Version 0 is one archive row: the random rollouts and every `--negatives` file all count."""
    from grace.search.archive import Archive
    from grace.search.negatives import ensure_random_negatives
    from grace.tasks import get_task
    from tests.conftest import DEMOS

    task = get_task("cartpole")
    archive = Archive(tmp_path / "archive.sqlite")
    files = (str(DEMOS / "cartpole.npz"), str(DEMOS / "acrobot.npz"))
    ensure_random_negatives(archive, tmp_path, task, 2, 0, files[:1] + files[:1])
    sets = negative_sets(archive, tmp_path, task, 0)
    assert [tag for tag, _ in sets] == ["random", "file:cartpole.npz#0", "file:cartpole.npz#1"]
    assert sets[0][1].n_episodes == 2 and sets[1][1].n_episodes == sets[2][1].n_episodes > 2
    ensure_random_negatives(archive, tmp_path, task, 2, 0, files)  # already made: unchanged
    assert len(negative_sets(archive, tmp_path, task, 0)) == 3
    archive.close()
