"""Self-adaptive memory: incremental eviction vs. brute force, hand-computed cases, checkpoints."""

import io
import math

import numpy as np
import pytest
import torch

from divdistill.method.memory import STRATEGIES, ClassMemory, Memory, evict_bruteforce

SEQUENCES_PER_STRATEGY = 500  # x 4 strategies = 2000 random insertion sequences
SHAPES = [(2,), (3,), (2, 2), (1, 3, 2), (4, 4)]


def gen(seed):
    return torch.Generator().manual_seed(seed)


def random_pool(rng: np.random.Generator, n: int, shape: tuple) -> torch.Tensor:
    """n latents of `shape`, from a family chosen to hit the hard cases: exact ties and zero
    vectors (ternary), scaled duplicates (equal cosines up to rounding), tight clusters."""
    d = int(np.prod(shape))
    kind = rng.choice(["gauss", "ternary", "scaled_dups", "cluster"])
    if kind == "gauss":
        x = rng.standard_normal((n, d))
    elif kind == "ternary":
        x = rng.integers(-1, 2, (n, d)).astype(float)
    elif kind == "scaled_dups":
        base = rng.standard_normal((3, d))
        x = base[rng.integers(0, 3, n)] * rng.uniform(0.1, 10.0, (n, 1))
    else:
        x = rng.standard_normal(d) + 0.05 * rng.standard_normal((n, d))
    return torch.from_numpy(x).float().reshape(n, *shape)


def np_cos(a, b):
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# ----------------------------------------------------------------------------- vs. brute force


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_incremental_equals_bruteforce_on_random_sequences(strategy):
    rng = np.random.default_rng(STRATEGIES.index(strategy))
    evictions = 0
    for seq in range(SEQUENCES_PER_STRATEGY):
        shape = SHAPES[rng.integers(len(SHAPES))]
        capacity = int(rng.integers(1, 9))
        sizes = rng.integers(0, 13, rng.integers(1, 7))
        pool = random_pool(rng, int(sizes.sum()), shape)
        mem = ClassMemory(capacity, strategy, gen(seq))
        ref_gen, ref_ids, start = gen(seq), [], 0  # reference: ids into pool, brute-force evicted
        for b in sizes:
            batch_ids = list(range(start, start + b))
            start += b
            mem.add(pool[batch_ids])
            cand = ref_ids + batch_ids
            ref_ids = [cand[i] for i in evict_bruteforce(pool[cand], capacity, strategy, ref_gen)]
            evictions += len(cand) - len(ref_ids)
            assert len(mem) == len(ref_ids) == min(capacity, start)
            assert torch.equal(mem.tensor(), pool[ref_ids]), (seq, strategy)
            if len(ref_ids) >= 2:
                u = torch.nn.functional.normalize(pool[ref_ids].flatten(1).double(), dim=1, eps=1e-8)
                n = len(ref_ids)
                expect = ((u @ u.T).sum() - u.pow(2).sum()) / (n * (n - 1))
                assert mem.mean_pairwise_similarity() == pytest.approx(float(expect), abs=1e-12)
    assert evictions > 5 * SEQUENCES_PER_STRATEGY  # the sequences do exercise eviction


@pytest.mark.parametrize("strategy", ["max", "min"])
def test_bruteforce_matches_numpy_loop(strategy):
    """The reference itself vs. a plain loop over eq. (7). Gaussian data has no ties except the
    mathematical one of any 2 elements (s_0 = s_1 = 1 + sigma), which must go to index 0."""
    rng = np.random.default_rng(7)
    for _ in range(100):
        n, d, k = int(rng.integers(2, 12)), int(rng.integers(2, 6)), int(rng.integers(1, 6))
        x = rng.standard_normal((n, d))
        kept = list(range(n))
        while len(kept) > k:
            s = [sum(np_cos(x[j], x[i]) for i in kept) for j in kept]
            s = np.array(s) if strategy == "max" else -np.array(s)
            kept.pop(int(np.flatnonzero(s >= s.max() - 1e-9)[0]))
        assert evict_bruteforce(torch.from_numpy(x), k, strategy) == kept


# ----------------------------------------------------------------------------- hand-computed cases

A, B, C = [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]  # s = 1 + 1/sqrt2 for A and B, 1 + sqrt2 for C


@pytest.mark.parametrize(
    "strategy, vectors, capacity, expect",
    [
        ("max", [A, B, C], 2, [0, 1]),  # C is the most redundant
        ("min", [A, B, C], 2, [1, 2]),  # A and B tie at the minimum: the lower index goes
        ("max", [C, A, B], 2, [1, 2]),
        ("min", [C, B, A], 2, [0, 2]),
        ("max", [A, A, B], 2, [1, 2]),  # duplicates tie at s = 2: the first one goes
        ("min", [A, A, B], 2, [0, 1]),
        ("max", [[3.0, 3.0], [0.1, 0.1], B], 2, [1, 2]),  # scaled duplicates tie up to rounding
        # Recompute after each pop: a one-shot top-2 would drop both copies of p. Sequentially p
        # goes (s = 2, tie, lower index), then q and r tie at 1.8 while p' has dropped to 1.
        ("max", [[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0.8, 0.6]], 2, [1, 3]),
        ("fifo", [A, B, C, A], 2, [2, 3]),
        ("max", [A, B, C], 3, [0, 1, 2]),
        ("max", [A, B, C], 1, [1]),  # pops C, then A and B tie at s = 1: A goes
    ],
)
def test_hand_computed_batch(strategy, vectors, capacity, expect):
    x = torch.tensor(vectors, dtype=torch.float32)
    assert evict_bruteforce(x, capacity, strategy) == expect
    mem = ClassMemory(capacity, strategy)
    mem.add(x)  # one batch: appended in batch order, then evicted
    assert torch.equal(mem.tensor(), x[expect])


def test_hand_computed_one_at_a_time():
    """Eviction runs after every add. K=1, max, inserting A, B, C: {A, B} tie -> A goes;
    {B, C} tie at 1 + 1/sqrt2 -> B goes; C remains (a single batch would have kept B)."""
    x = torch.tensor([A, B, C])
    mem = ClassMemory(1, "max")
    for row in x:
        mem.add(row[None])
    assert torch.equal(mem.tensor(), x[2:])


def test_mean_pairwise_similarity_by_hand():
    mem = ClassMemory(4, "max")
    assert mem.mean_pairwise_similarity() is None
    mem.add(torch.tensor([A]))
    assert mem.mean_pairwise_similarity() is None
    mem.add(torch.tensor([B, C]))
    assert mem.mean_pairwise_similarity() == pytest.approx((0 + 2 / math.sqrt(2)) / 3, abs=1e-12)


# ----------------------------------------------------------------------------- contract


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_capacity_respected(strategy):
    mem = ClassMemory(5, strategy, gen(0))
    total = 0
    for b in [3, 1, 0, 17, 5, 2]:
        mem.add(torch.randn(b, 4, 2, 2))
        total += b
        assert len(mem) == min(5, total)
        assert mem.tensor().shape == (min(5, total), 4, 2, 2)


def test_stores_detached_original_values():
    x = (3.0 * torch.randn(4, 2, 3)).requires_grad_()
    mem = ClassMemory(8, "max")
    mem.add(x)
    assert not mem.tensor().requires_grad
    assert torch.equal(mem.tensor(), x.detach())  # not normalised
    assert mem.tensor().dtype == torch.float32


def test_random_pops_uniformly():
    """5 latents into K=4 by "random": each is the one dropped with probability 1/5."""
    mem_gen, drops = gen(123), np.zeros(5)
    x = torch.arange(5.0)[:, None] + 1.0  # distinct rows so the dropped one is identifiable
    for _ in range(2000):
        mem = ClassMemory(4, "random", mem_gen)
        mem.add(x)
        drops[sorted(set(range(5)) - set(mem.tensor()[:, 0].long().sub(1).tolist()))] += 1
    assert drops.sum() == 2000
    assert np.all(np.abs(drops - 400) < 80)  # ~4 binomial standard deviations (sd = 17.9)


def test_bad_strategy_raises():
    with pytest.raises(ValueError, match=r"'lifo'.*fifo, max, min, random"):
        ClassMemory(4, "lifo")
    with pytest.raises(ValueError, match="'Max'"):
        Memory(4, "Max")
    with pytest.raises(ValueError, match="'median'"):
        evict_bruteforce(torch.randn(3, 2), 2, "median")
    with pytest.raises(ValueError, match="capacity"):
        ClassMemory(0, "max")


def test_nonfinite_latents_raise():
    mem = ClassMemory(1, "max")
    with pytest.raises(ValueError, match="not finite"):
        mem.add(torch.tensor([[1.0, float("nan")], [1.0, 0.0]]))


# ----------------------------------------------------------------------------- Memory (per class)


@pytest.mark.parametrize("strategy", ["max", "random"])
def test_memory_groups_by_class_in_batch_order(strategy):
    """Expected: per-class ClassMemories fed each class's rows in batch order, classes ascending
    (for "random", one generator shared by the classes, so the class order matters)."""
    rng, shared = np.random.default_rng(0), gen(3)
    mem = Memory(3, strategy, gen(3))
    per_class = {c: ClassMemory(3, strategy, shared) for c in (0, 2, 5)}
    for _ in range(6):
        labels = torch.from_numpy(rng.choice([0, 2, 5], 7))
        x = random_pool(rng, 7, (2, 3))
        mem.update(x, labels)
        for c, m in per_class.items():
            if (labels == c).any():
                m.add(x[labels == c])
    assert mem.classes() == [0, 2, 5]
    for c, m in per_class.items():
        assert torch.equal(mem.get(c), m.tensor())
    assert mem.get(1) is None
    assert mem.mean_pairwise_similarity() == pytest.approx(
        np.mean([m.mean_pairwise_similarity() for m in per_class.values()]), abs=1e-12
    )


def test_memory_mean_similarity_skips_singletons():
    mem = Memory(4, "fifo")
    assert mem.mean_pairwise_similarity() is None
    mem.update(torch.tensor([A, B, C, [5.0, 1.0]]), torch.tensor([0, 1, 1, 2]))
    assert mem.mean_pairwise_similarity() == pytest.approx(1 / math.sqrt(2), abs=1e-12)  # class 1 only


# ----------------------------------------------------------------------------- checkpoint / resume


def roundtrip(state: dict) -> dict:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_class_memory_resume_is_exact(strategy):
    rng = np.random.default_rng(1)
    batches = [random_pool(rng, int(b), (3, 2)) for b in rng.integers(1, 9, 12)]
    straight = ClassMemory(6, strategy, gen(5))
    for x in batches[:6]:
        straight.add(x)
    resumed = ClassMemory(6, strategy, gen(999))  # different seed: the state must overwrite it
    resumed.load_state_dict(roundtrip(straight.state_dict()))
    assert torch.equal(resumed.tensor(), straight.tensor())
    for x in batches[6:]:
        straight.add(x)
        resumed.add(x)
        assert torch.equal(resumed.tensor(), straight.tensor())
        assert resumed.mean_pairwise_similarity() == straight.mean_pairwise_similarity()


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_memory_resume_is_exact(strategy):
    rng = np.random.default_rng(2)
    steps = [(random_pool(rng, 10, (2, 2)), torch.from_numpy(rng.integers(0, 4, 10))) for _ in range(10)]
    straight = Memory(3, strategy, gen(5))
    for x, y in steps[:5]:
        straight.update(x, y)
    resumed = Memory(3, strategy, gen(999))
    resumed.load_state_dict(roundtrip(straight.state_dict()))
    for x, y in steps[5:]:
        straight.update(x, y)
        resumed.update(x, y)
    assert resumed.classes() == straight.classes()
    for c in straight.classes():
        assert torch.equal(resumed.get(c), straight.get(c))


def test_load_rejects_other_config():
    mem = ClassMemory(4, "max")
    mem.add(torch.randn(2, 3))
    with pytest.raises(ValueError, match="capacity=4"):
        ClassMemory(5, "max").load_state_dict(mem.state_dict())
    with pytest.raises(ValueError, match="generator"):
        ClassMemory(4, "max").load_state_dict(ClassMemory(4, "max", gen(0)).state_dict())


def test_returned_tensors_and_states_are_not_mutated_by_later_adds():
    a = ClassMemory(3, "max")
    a.add(torch.randn(5, 2, 2))
    held, state = a.tensor(), a.state_dict()
    snapshot = (held.clone(), state["latents"].clone())
    b = ClassMemory(3, "max")
    b.load_state_dict(state)
    for _ in range(4):
        a.add(torch.randn(2, 2, 2))
        b.add(torch.randn(2, 2, 2))
    assert torch.equal(held, snapshot[0]) and torch.equal(state["latents"], snapshot[1])
