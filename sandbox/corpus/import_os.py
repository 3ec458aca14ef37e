# expect: forbidden
# Imports are refused at compile time.
import os


def reward(s, a, s_next, p):
    os.system("touch pwned")
    return 0.0
