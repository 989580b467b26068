"""derive/runtime/held.py: copies and bitwise comparisons that keep the GIL, as NumPy's would give."""

import numpy as np
import pytest

from derive.runtime import held


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_copy_is_an_independent_c_contiguous_equal_array(dtype):
    a = np.arange(24, dtype=dtype).reshape(2, 3, 4)
    for source in (a, a[:, ::-1], a.transpose(2, 0, 1), a.astype(np.int64), np.empty((0, 3), dtype)):
        out = held.copy(source)
        assert out.flags.c_contiguous and out.dtype == source.dtype and out.shape == source.shape
        np.testing.assert_array_equal(out, source)
        assert not np.shares_memory(out, source)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_bits_compares_bits_not_values(dtype):
    a = np.array([[0.0, np.nan], [1.0, np.inf]], dtype)
    assert held.same_bits(a, a.copy())  # NaN equals itself bit for bit
    b = a.copy()
    b[0, 0] = -0.0  # equal as a value, other bits
    assert not held.same_bits(a, b)
    assert held.same_bits(a.T, np.ascontiguousarray(a.T))  # another layout: NumPy's path
    assert not held.same_bits(a, a.astype(np.float16))
    assert not held.same_bits(a, a[:1])
