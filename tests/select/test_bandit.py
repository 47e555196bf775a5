"""Quad's bandit (METHODS.md 5.2): never-pulled clusters first, then the UCB score; rewards reach
neighbouring centroids scaled by distance; a cluster draws its rows in its queue's order, once each."""
from __future__ import annotations

import math

import numpy as np
import pytest

from dataselect.select.bandit import ClusterBandit


def _bandit(alpha: float = 0.0, radius: float = 0.2) -> ClusterBandit:
    centroids = np.array([[1.0, 0.0], [0.99, math.sqrt(1 - 0.99**2)], [0.0, 1.0]])  # 0 and 1 are 0.01 apart, 2 is far
    return ClusterBandit([np.array([5, 3, 9]), np.array([0, 1]), np.array([2, 4, 6, 7])], centroids, alpha, radius)


def test_clusters_never_updated_come_first_then_the_best_mean_reward():
    bandit = _bandit()
    assert bandit.pick(2) == [0, 1]  # all untried: +inf, ties by id
    assert bandit.draw(0, 2).tolist() == [5, 3] and bandit.draw(0, 2).tolist() == [9] and bandit.draw(0, 2).tolist() == []
    bandit.update(2, 0.5)
    assert bandit.count.tolist() == [0, 0, 1]  # cluster 2 has no neighbour within the radius
    bandit.update(1, -1.0)  # reaches cluster 0 too: distance 0.01 < 0.2
    assert bandit.score[0] == pytest.approx(-1.0 * (1 - 0.01 / 0.2)) and bandit.count.tolist() == [1, 1, 1]
    assert bandit.total == 3
    assert bandit.pick(3) == [2, 1]  # cluster 0 is drawn out; 2's mean reward beats 1's
    assert bandit.pulls.tolist() == [3, 0, 0]


def test_the_exploration_bonus_follows_the_ucb_formula():
    bandit = _bandit(alpha=0.5, radius=0.0)
    for cluster, reward in ((0, 1.0), (1, 1.0), (1, 1.0), (2, 0.0)):
        bandit.update(cluster, reward)
    total = 4
    expected = [1.0 + 0.5 * math.sqrt(2 * math.log(total) / 2), 1.0 + 0.5 * math.sqrt(2 * math.log(total) / 3),
                0.0 + 0.5 * math.sqrt(2 * math.log(total) / 2)]
    assert bandit.ucb().tolist() == pytest.approx(expected)
    bandit.update(2, float("nan"))  # a pull with nothing scored teaches nothing
    assert bandit.count.tolist() == [1, 2, 1]
