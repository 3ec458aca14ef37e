"""Reward: position near c_position.

grace provenance:
  task: mountaincar_fixed
  demos: demos/mountaincar_fixed.npz (sha256 6171a723c70c)
  fitness: 0.9959 train, 0.9991 held-out (offline GRACE discrimination, negatives v1)
  accuracy: 1.000 train, 1.000 held-out; AUC 1.000 train, 1.000 held-out
  run: runs/quality/mountaincar_fixed-r2 round 1 generation 0 slot 21
  program: 4b45195df035 (rescore by offline)
  lineage: 4b45195df035 <- 4b45195df035 <- bd3988b3013a
  grace: 0.1.0
"""

PARAMS = {"w_position": 4.079, "c_position": 0.5259, "s_position": 0.03496}


def reward(s, a, s_next, p):
    position = p["w_position"] * xp.exp(-(((s_next.position - p["c_position"]) / p["s_position"]) ** 2))
    return position, {"position": position}
