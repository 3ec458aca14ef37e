# expect: forbidden
# Thread bomb needs threading.
from threading import Thread


def reward(s, a, s_next, p):
    while True:
        Thread(target=lambda: None).start()
