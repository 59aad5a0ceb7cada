"""``film``: ``f = gamma(t) v + beta(t)``."""

from ._layers import linear


def film(s, p, v, t, *, training, noise):
    gamma = linear(p, "gamma", t)  # (B, D)
    beta = linear(p, "beta", t)  # (B, D)
    return gamma * v + beta, {"gamma": gamma, "beta": beta}
