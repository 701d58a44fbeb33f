"""The error function in NumPy, to full double precision.

NumPy has no ``erf``; BERT's exact GELU needs one. This is W. J. Cody's rational
Chebyshev approximation ("Rational Chebyshev approximations for the error
function", Math. Comp. 23, 1969), as in netlib's SPECFUN ``CALERF``; R's ``pnorm`` uses
Cody's later version for the normal CDF. (The C libraries do not: glibc, musl and the BSDs
take their ``erf`` from Sun's fdlibm, a different set of approximations.) Its maximal
relative error is below 1e-16 on each of its three intervals; ``tests/test_erf.py`` checks
it against ``math.erf``, which is the C library's (4 ulp at most).

It evaluates in the input's own dtype: float32 in, float32 arithmetic out.
"""

from __future__ import annotations

import numpy as np

# |x| <= 0.46875:  erf(x) = x * P(x^2) / Q(x^2)
_A = (3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02,
      3.20937758913846947e03, 1.85777706184603153e-1)
_B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
      2.84423683343917062e03)
# 0.46875 < |x| <= 4:  erfc(x) = exp(-x^2) * P(x) / Q(x)
_C = (5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01,
      2.98635138197400131e02, 8.81952221241769090e02, 1.71204761263407058e03,
      2.05107837782607147e03, 1.23033935479799725e03, 2.15311535474403846e-8)
_D = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
      1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
      3.43936767414372164e03, 1.23033935480374942e03)
# |x| > 4:  erfc(x) = exp(-x^2) / x * (1/sqrt(pi) + R(1/x^2) / (x^2 S(1/x^2)))
_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1,
      1.60837851487422766e-2, 6.58749161529837803e-4, 1.63153871373020978e-2)
_Q = (2.56852019228982242e00, 1.87295284992346725e00, 5.27905102951428412e-1,
      6.05183413124413191e-2, 2.33520497626869185e-3)
_ONE_OVER_SQRT_PI = 5.6418958354775628695e-1
_SMALL, _LARGE = 0.46875, 4.0
_ERF_IS_ONE = 6.0  # erfc(6) < 2e-17: erf rounds to 1 in double precision


def _exp_minus_square(y: np.ndarray) -> np.ndarray:
    """exp(-y^2) without the rounding error of forming y^2: split y = ysq + (y - ysq)
    where ysq has few bits (a multiple of 1/16), so ysq^2 is exact (Cody's trick)."""
    ysq = np.trunc(y * 16) / 16
    return np.exp(-ysq * ysq) * np.exp(-(y - ysq) * (y + ysq))


def _ratio(t: np.ndarray, leading: float, num_coefficients, den_coefficients) -> tuple[np.ndarray, np.ndarray]:
    """Numerator and denominator of Cody's rational functions in t, by Horner's rule,
        num = ((leading t + c_0) t + c_1) t ...     den = ((t + d_0) t + d_1) t ...
    without their constant terms, which the caller adds. In place: on large arrays each
    pass through memory costs more than the arithmetic in it."""
    num, den = leading * t, t.copy()
    for c, d in zip(num_coefficients, den_coefficients):
        num += c
        num *= t
        den += d
        den *= t
    return num, den


def _erf_small(x: np.ndarray) -> np.ndarray:
    xsq = x * x
    num, den = _ratio(xsq, _A[4], _A[:3], _B[:3])
    return x * (num + _A[3]) / (den + _B[3])


def _erfc_medium(y: np.ndarray) -> np.ndarray:
    num, den = _ratio(y, _C[8], _C[:7], _D[:7])
    return _exp_minus_square(y) * (num + _C[7]) / (den + _D[7])


def _erfc_large(y: np.ndarray) -> np.ndarray:
    inv_sq = 1 / (y * y)
    num, den = _ratio(inv_sq, _P[5], _P[:4], _Q[:4])
    tail = inv_sq * (num + _P[4]) / (den + _Q[4])
    return _exp_minus_square(y) * (_ONE_OVER_SQRT_PI - tail) / y


def erf(x: np.ndarray) -> np.ndarray:
    """erf(x) = 2/sqrt(pi) * integral_0^x exp(-t^2) dt, elementwise, in x's dtype.

    The two common intervals are evaluated over the whole array and chosen with np.where
    (each formula on |x| clipped into its interval, where it is finite): gathering the
    elements of each interval and scattering them back would cost more than the arithmetic.
    The tail beyond 4 is rare, so it is gathered. NaN passes through the medium formula.
    """
    x = np.asarray(x)
    y = np.abs(x)
    out = np.where(y <= _SMALL, _erf_small(np.minimum(y, _SMALL)), 1 - _erfc_medium(np.clip(y, _SMALL, _LARGE)))
    tail = y > _LARGE
    if tail.any():
        y_tail = y[tail]
        out[tail] = np.where(y_tail < _ERF_IS_ONE, 1 - _erfc_large(np.minimum(y_tail, _ERF_IS_ONE)), 1)
    return np.copysign(out, x)  # erf is odd
