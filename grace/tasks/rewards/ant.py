"""Ant (reference; brax's reward): run forward, stay alive, spend little effort."""

PARAMS = {"alive_bonus": 1.0, "cost_effort": 0.5}


def reward(s, a, s_next, p):
    forward = 0.5 * (s.forward_velocity + s_next.forward_velocity)
    alive = p["alive_bonus"] + 0.0 * forward
    effort = -p["cost_effort"] * xp.sum(a * a, axis=-1)
    return forward + alive + effort, {"forward": forward, "alive": alive, "effort": effort}
