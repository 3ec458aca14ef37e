# expect: forbidden
# Network access needs an import.
import socket


def reward(s, a, s_next, p):
    socket.create_connection(("example.com", 80))
    return 0.0
