import math

import torch

from divdistill.evaluate.diversity import coverage, within_class_similarity


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


# ----------------------------------------------------------------------------- PRDC (Naeem et al. 2020)

from divdistill.evaluate.diversity import prdc  # noqa: E402


def test_prdc_hand_computed_k1_with_a_tie_on_a_ball_edge():
    # reals on a line 0, 1, 3, 7, 12: 1-NN radii 1, 1, 2, 4, 5; fakes 0.5, 5, 5.5: 1-NN radii 4.5, 0.5, 0.5.
    # fake 0.5 lies in the balls of reals 0 and 1; fake 5 in those of 3 (distance 2 = its radius: closed
    # ball) and 7; fake 5.5 in 7's; real 12's ball (5) holds none (nearest fake 5.5 at 6.5).
    real, fake = torch.tensor([[0.0], [1.0], [3.0], [7.0], [12.0]]), torch.tensor([[0.5], [5.0], [5.5]])
    got = prdc(real, fake, k=1)
    assert got["precision"] == 1.0  # every fake inside some real ball
    assert math.isclose(got["density"], (2 + 2 + 1) / (1 * 3))  # balls holding each fake, / (k M)
    assert got["coverage"] == 4 / 5  # reals 0, 1, 3, 7 have a fake in their ball
    # recall: reals inside a fake ball: 0, 1, 3 (fake 0.5's radius 4.5); 7 is 1.5 from fake 5.5 (radius 0.5)
    assert got["recall"] == 3 / 5


def test_prdc_duplicate_reals_have_radius_zero_and_still_hold_their_copy():
    # reals 0, 0, 5 (k = 1): the two zeros are each other's nearest neighbour, radius 0; real 5's is 5.
    # fakes 0 and 9 (radius 9 each). Closed balls: fake 0 sits in both zero balls and in 5's (distance
    # 5 = radius), fake 9 in 5's only (distance 4).
    got = prdc(torch.tensor([[0.0], [0.0], [5.0]]), torch.tensor([[0.0], [9.0]]), k=1)
    assert got == {"precision": 1.0, "recall": 1.0, "density": (3 + 1) / 2, "coverage": 1.0}


def test_prdc_matches_the_definition_in_plain_loops():
    g = torch.Generator().manual_seed(0)
    real, fake, k = torch.randn(40, 3, generator=g), torch.randn(15, 3, generator=g) * 1.5 + 0.5, 3

    def radius(points, i):  # distance to the k-th nearest other point
        return sorted(float((points[i] - points[j]).norm()) for j in range(len(points)) if j != i)[k - 1]

    rr, fr = [radius(real, i) for i in range(len(real))], [radius(fake, j) for j in range(len(fake))]
    dist = lambda i, j: float((real[i] - fake[j]).norm())  # noqa: E731
    inside = [[dist(i, j) <= rr[i] for j in range(len(fake))] for i in range(len(real))]
    want = {
        "precision": sum(any(inside[i][j] for i in range(len(real))) for j in range(len(fake))) / len(fake),
        "recall": sum(any(dist(i, j) <= fr[j] for j in range(len(fake))) for i in range(len(real))) / len(real),
        "density": sum(map(sum, inside)) / (k * len(fake)),
        "coverage": sum(any(row) for row in inside) / len(real),
    }
    got = prdc(real, fake, k=k)
    assert got.keys() == want.keys()
    assert all(math.isclose(got[key], want[key], rel_tol=1e-9) for key in want), (got, want)
    assert 0 < got["coverage"] < 1 and 0 < got["precision"] <= 1  # the example is not degenerate


def test_prdc_with_k_or_fewer_points():
    import pytest

    got = prdc(torch.randn(20, 2), torch.randn(5, 2), k=5)  # 5 fakes have no 5th other neighbour
    assert got["recall"] is None and all(got[key] is not None for key in ("precision", "density", "coverage"))
    with pytest.raises(ValueError, match="k = 5 needs more than 5 points"):
        prdc(torch.randn(5, 2), torch.randn(20, 2), k=5)  # the real set is always larger
