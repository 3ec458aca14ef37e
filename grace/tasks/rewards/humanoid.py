"""Humanoid (reference; brax's reward): move the centre of mass forward, stay alive, little effort.

Brax scales the action to the motors' +-0.4 range before charging for it: 0.1 |0.4 a|^2."""

PARAMS = {"forward_weight": 1.25, "alive_bonus": 5.0, "cost_effort": 0.016}


def reward(s, a, s_next, p):
    forward = p["forward_weight"] * 0.5 * (s.com_forward_velocity + s_next.com_forward_velocity)
    alive = p["alive_bonus"] + 0.0 * forward
    effort = -p["cost_effort"] * xp.sum(a * a, axis=-1)
    return forward + alive + effort, {"forward": forward, "alive": alive, "effort": effort}
