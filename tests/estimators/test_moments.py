import numpy as np

from msa_core.estimators.base import RunningMoments


def moments_of(batches):
    moments = RunningMoments(batches[0].shape[1:])
    for batch in batches:
        moments.add(batch.copy())
    return moments


def test_float32_samples_give_the_sums_of_the_same_numbers_in_float64():
    """float32 samples are shifted into float64, so a chunked (distributed) run, whose shift is
    another sample, agrees with a local run to float64 rounding, not float32's."""
    rng = np.random.default_rng(0)
    # a large mean against the spread: the shift keeps the variance free of cancellation
    batches = [(1e3 + rng.normal(size=(4, 5, 3))).astype(np.float32) for _ in range(6)]
    low = moments_of(batches)
    exact = moments_of([batch.astype(np.float64) for batch in batches])
    for key, value in exact.state_dict().items():
        assert np.array_equal(low.state_dict()[key], value), key
    spread = np.concatenate(batches).astype(np.float64).std(axis=0, ddof=1)
    np.testing.assert_allclose(low.stderr(), spread / np.sqrt(24), rtol=1e-9)


def test_constant_and_zero_samples_have_exactly_zero_stderr():
    constant = np.full((3, 2), 0.3, dtype=np.float32)
    moments = moments_of([constant, constant, np.zeros((1, 2), np.float32) + np.float32(0.3)])
    assert moments.stderr().tolist() == [0.0, 0.0]
    assert moments.mean.tolist() == [float(np.float32(0.3))] * 2
