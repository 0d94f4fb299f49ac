import numpy as np

from msa_core.estimators.base import RunningMoments


def moments_of(batches):
    moments = RunningMoments(batches[0].shape[1:])
    for batch in batches:
        moments.add(batch.copy())
    return moments


def test_float32_samples_are_summed_within_a_block_in_float32_and_across_blocks_in_float64():
    """float32 samples are shifted by the (float32) first sample and summed in float32 within one
    ``add`` (a block of m samples): each block's sums are within m float32 roundings of the same
    sums in float64, so the totals agree with float64 ones to that bound, far below the spread,
    and the shift keeps the variance free of cancellation."""
    rng = np.random.default_rng(0)
    # a large mean against the spread: the shift keeps the variance free of cancellation
    batches = [(1e3 + rng.normal(size=(4, 5, 3))).astype(np.float32) for _ in range(6)]
    low = moments_of(batches)
    exact = moments_of([batch.astype(np.float64) for batch in batches])
    shifted = [batch.astype(np.float64) - batches[0][0] for batch in batches]
    eps = 4 * 2.0**-24  # m = 4 samples per block: rounding of each shifted value and each add
    sum_bound = sum(eps * np.abs(part).sum(axis=0) for part in shifted)
    sum_sq_bound = sum(2 * eps * (part**2).sum(axis=0) for part in shifted)
    assert np.all(np.abs(low.sum - exact.sum) <= sum_bound)
    assert np.all(np.abs(low.sum_sq - exact.sum_sq) <= sum_sq_bound)
    assert np.array_equal(low.shift, exact.shift) and low.count == exact.count
    spread = np.concatenate(batches).astype(np.float64).std(axis=0, ddof=1)
    np.testing.assert_allclose(low.stderr(), spread / np.sqrt(24), rtol=1e-5)


def test_a_float64_first_sample_keeps_later_float32_samples_in_float64():
    moments = RunningMoments((2,))
    moments.add(np.array([[0.1, 0.2]]))  # no float32 numbers: float32 samples are summed in float64
    moments.add(np.array([[0.5, 0.25]], dtype=np.float32))
    assert moments.sum.tolist() == [float(np.float32(0.5)) - 0.1, 0.25 - 0.2]


def test_constant_and_zero_samples_have_exactly_zero_stderr():
    constant = np.full((3, 2), 0.3, dtype=np.float32)
    moments = moments_of([constant, constant, np.zeros((1, 2), np.float32) + np.float32(0.3)])
    assert moments.stderr().tolist() == [0.0, 0.0]
    assert moments.mean.tolist() == [float(np.float32(0.3))] * 2
