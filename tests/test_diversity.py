import math

import torch

from divdistill.diversity import coverage, within_class_similarity


def test_within_class_similarity_hand_computed():
    # class 0: e1, e1, e2 -> pairs (1, 0, 0) -> mean 1/3; class 1: e1, -e1 -> -1
    x = torch.tensor([[1.0, 0], [2.0, 0], [0, 3.0], [1.0, 0], [-1.0, 0]])
    y = torch.tensor([0, 0, 0, 1, 1])
    assert math.isclose(within_class_similarity(x, y), (1 / 3 + -1) / 2, rel_tol=1e-12)
    assert within_class_similarity(x[:1], y[:1]) is None


def test_coverage_counts_real_points_near_a_distilled_point():
    # real points of one class on a line at 0, 1, 2, 10, 11: nearest-other distances 1,1,1,1,1 -> tau = 1
    real = torch.tensor([[0.0], [1.0], [2.0], [10.0], [11.0]])
    rl = torch.zeros(5, dtype=torch.long)
    # a distilled point at 1.5 is within 1 of reals 1 and 2 (distance 0.5) but not of 0 (1.5) -> 2/5
    assert coverage(real, rl, torch.tensor([[1.5]]), torch.tensor([0])) == 2 / 5
    # adding one at 10.5 covers 10 and 11 too -> 4/5: a set spread over both modes covers more
    assert coverage(real, rl, torch.tensor([[1.5], [10.5]]), torch.tensor([0, 0])) == 4 / 5
    # a distilled point of another class covers nothing of this one
    assert coverage(real, rl, torch.tensor([[1.5]]), torch.tensor([1])) == 0.0
