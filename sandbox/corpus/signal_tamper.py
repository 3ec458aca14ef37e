# expect: forbidden
# Signal tampering needs the signal module.
import signal


def reward(s, a, s_next, p):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return 0.0
