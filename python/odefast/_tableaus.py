"""Butcher tableaus of the explicit Runge--Kutta methods provided by odefast.

This module is the single source of truth for the coefficients.  The C++
header ``cpp/include/odefast/tableaus.hpp`` is generated from it by
``tools/gen_tableaus.py``; edit the numbers here, never in the header.

It deliberately imports nothing but NumPy and the standard library so that it
can be used (and tested) without the compiled extension.

Conventions
-----------
For an ``s``-stage method with step ``h`` from ``(t0, y0)``::

    k_i = f(t0 + c_i h, y0 + h * sum_j a[i, j] k_j)          (j < i)
    y1  = y0 + h * sum_i b[i] k_i
    err = h * sum_i b_err[i] k_i          with b_err = b - b_hat
    y(t0 + theta h) ~= y0 + h * sum_i k_i * sum_j dense[i, j] theta**(j + 1)

``b_hat`` are the weights of the embedded (lower order) solution, of order
``error_order``.  For the FSAL pairs (bosh3, dopri5, tsit5) the last stage is
``f(t0 + h, y1)``; it carries a zero weight in ``b`` but (in general) a
nonzero weight in ``b_err`` and ``dense``, and it is the first stage of the
next step.

Coefficients are written as exact rationals evaluated in float64 (``44/45``)
where the source gives rationals; otherwise as decimals that round (correctly,
by Python's parser) to the nearest float64 of the published value.

Sources
-------
* bosh3: P. Bogacki, L. F. Shampine, "A 3(2) pair of Runge-Kutta formulas",
  Appl. Math. Lett. 2 (1989).  Dense output: cubic Hermite interpolation
  between (y0, f0) and (y1, f1), written over the 4 stages (as SciPy's RK23 P).
* dopri5: J. R. Dormand, P. J. Prince, "A family of embedded Runge-Kutta
  formulae", J. Comput. Appl. Math. 6 (1980).  Dense output: L. F. Shampine,
  "Some practical Runge-Kutta formulas", Math. Comp. 46 (1986) (SciPy RK45 P).
* tsit5: Ch. Tsitouras, "Runge-Kutta pairs of order 5(4) satisfying only the
  first column simplifying assumption", Comput. Math. Appl. 62 (2011).
  Tableau from the high-precision values of the paper; the dense output is the
  paper's 4th-order continuous extension b_i(theta), given there in factored
  form, expanded here exactly (rational arithmetic on the printed decimals)
  and rounded once to float64.
* dopri8: E. Hairer, S. P. Norsett, G. Wanner, "Solving Ordinary Differential
  Equations I", 2nd ed., Sec. II.10, and Hairer's code DOP853 (coefficients
  as printed in dop853.f / SciPy's ``dop853_coefficients``).  Only the 12
  propagation stages are kept.  ``b_err`` is the 5th-order estimator E5 and
  ``b_err3`` the 3rd-order estimator E3 = b - bhh.  The 13th evaluation
  f(t0 + h, y1) that SciPy appends to K has weight exactly 0 in both E5 and
  E3, so nothing is lost by dropping it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

__all__ = ["Tableau", "TABLEAUS", "METHODS"]


@dataclass(frozen=True, eq=False)
class Tableau:
    """Coefficients of one explicit Runge--Kutta method (see module docstring)."""

    name: str
    order: int
    error_order: int
    c: np.ndarray
    a: np.ndarray
    b: np.ndarray
    b_err: np.ndarray
    b_err3: Optional[np.ndarray] = None
    dense: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        s = self.c.shape[0]
        if self.c.shape != (s,) or self.a.shape != (s, s):
            raise ValueError(f"{self.name}: inconsistent c / a shapes")
        if self.b.shape != (s,) or self.b_err.shape != (s,):
            raise ValueError(f"{self.name}: inconsistent b / b_err shapes")
        if self.b_err3 is not None and self.b_err3.shape != (s,):
            raise ValueError(f"{self.name}: inconsistent b_err3 shape")
        if self.dense is not None and (self.dense.ndim != 2 or self.dense.shape[0] != s):
            raise ValueError(f"{self.name}: inconsistent dense shape")

    @property
    def stages(self) -> int:
        return int(self.c.shape[0])

    @property
    def adaptive(self) -> bool:
        return self.error_order > 0

    @property
    def fsal(self) -> bool:
        """True if the last stage is f(t0 + h, y1) (c[-1] == 1 and a[-1, :] == b exactly)."""
        return bool(self.c[-1] == 1.0 and np.array_equal(self.a[-1], self.b))


def _vec(values) -> np.ndarray:
    arr = np.array(values, dtype=np.float64)
    arr.flags.writeable = False
    return arr


def _lower(rows) -> np.ndarray:
    """Build the s x s matrix a from its strictly lower rows (row i has i entries)."""
    s = len(rows)
    arr = np.zeros((s, s), dtype=np.float64)
    for i, row in enumerate(rows):
        if len(row) != i:
            raise ValueError(f"row {i} of a must have {i} entries, got {len(row)}")
        arr[i, :i] = row
    arr.flags.writeable = False
    return arr


def _make(name, order, error_order, c, a_rows, b, b_err=None, b_err3=None, dense=None) -> Tableau:
    s = len(c)
    return Tableau(
        name=name,
        order=order,
        error_order=error_order,
        c=_vec(c),
        a=_lower(a_rows),
        b=_vec(b),
        b_err=_vec(b_err if b_err is not None else [0.0] * s),
        b_err3=None if b_err3 is None else _vec(b_err3),
        dense=None if dense is None else _vec(dense),
    )


# --------------------------------------------------------------------------
# Fixed-step methods
# --------------------------------------------------------------------------

EULER = _make("euler", 1, 0, c=[0.0], a_rows=[[]], b=[1.0])

MIDPOINT = _make(
    "midpoint", 2, 0,
    c=[0.0, 1/2],
    a_rows=[[], [1/2]],
    b=[0.0, 1.0],
)

HEUN = _make(
    "heun", 2, 0,
    c=[0.0, 1.0],
    a_rows=[[], [1.0]],
    b=[1/2, 1/2],
)

RK4 = _make(
    "rk4", 4, 0,
    c=[0.0, 1/2, 1/2, 1.0],
    a_rows=[
        [],
        [1/2],
        [0.0, 1/2],
        [0.0, 0.0, 1.0],
    ],
    b=[1/6, 1/3, 1/3, 1/6],
)

# --------------------------------------------------------------------------
# Bogacki--Shampine 3(2), FSAL
# --------------------------------------------------------------------------

_BOSH3_B = [2/9, 1/3, 4/9, 0.0]
_BOSH3_B_HAT = [7/24, 1/4, 1/3, 1/8]  # for reference; b_err below is b - b_hat

BOSH3 = _make(
    "bosh3", 3, 2,
    c=[0.0, 1/2, 3/4, 1.0],
    a_rows=[
        [],
        [1/2],
        [0.0, 3/4],
        _BOSH3_B[:3],
    ],
    b=_BOSH3_B,
    b_err=[-5/72, 1/12, 1/9, -1/8],
    dense=[
        [1.0, -4/3, 5/9],
        [0.0, 1.0, -2/3],
        [0.0, 4/3, -8/9],
        [0.0, -1.0, 1.0],
    ],
)

# --------------------------------------------------------------------------
# Dormand--Prince 5(4), FSAL
# --------------------------------------------------------------------------

_DOPRI5_B = [35/384, 0.0, 500/1113, 125/192, -2187/6784, 11/84, 0.0]
# b_hat = [5179/57600, 0, 7571/16695, 393/640, -92097/339200, 187/2100, 1/40]

DOPRI5 = _make(
    "dopri5", 5, 4,
    c=[0.0, 1/5, 3/10, 4/5, 8/9, 1.0, 1.0],
    a_rows=[
        [],
        [1/5],
        [3/40, 9/40],
        [44/45, -56/15, 32/9],
        [19372/6561, -25360/2187, 64448/6561, -212/729],
        [9017/3168, -355/33, 46732/5247, 49/176, -5103/18656],
        _DOPRI5_B[:6],
    ],
    b=_DOPRI5_B,
    b_err=[71/57600, 0.0, -71/16695, 71/1920, -17253/339200, 22/525, -1/40],
    # Shampine's 4th-order continuous extension.
    dense=[
        [1.0, -8048581381/2820520608, 8663915743/2820520608, -12715105075/11282082432],
        [0.0, 0.0, 0.0, 0.0],
        [0.0, 131558114200/32700410799, -68118460800/10900136933, 87487479700/32700410799],
        [0.0, -1754552775/470086768, 14199869525/1410260304, -10690763975/1880347072],
        [0.0, 127303824393/49829197408, -318862633887/49829197408, 701980252875/199316789632],
        [0.0, -282668133/205662961, 2019193451/616988883, -1453857185/822651844],
        [0.0, 40617522/29380423, -110615467/29380423, 69997945/29380423],
    ],
)

# --------------------------------------------------------------------------
# Tsitouras 5(4) (2011), FSAL
# --------------------------------------------------------------------------
# Float64 values (shortest round-trip repr) of the paper's high-precision
# coefficients.  b_err = b - b_hat was formed in exact arithmetic from the
# high-precision b and b_hat and rounded once, with
# b_hat = [0.09468075576583945, 0.009183565540343254, 0.4877705284247616,
#          1.234297566930479, -2.7077123499835256, 1.866628418170587, 1/66].

_TSIT5_B = [
    0.09646076681806523, 1/100, 0.4798896504144996, 1.379008574103742,
    -3.290069515436081, 2.324710524099774, 0.0,
]

TSIT5 = _make(
    "tsit5", 5, 4,
    c=[0.0, 161/1000, 327/1000, 9/10, 0.9800255409045097, 1.0, 1.0],
    a_rows=[
        [],
        [161/1000],
        [-0.008480655492356989, 0.335480655492357],
        [2.8971530571054935, -6.359448489975075, 4.3622954328695815],
        [5.325864828439257, -11.748883564062828, 7.4955393428898365, -0.09249506636175525],
        [5.86145544294642, -12.92096931784711, 8.159367898576159, -0.071584973281401,
         -0.028269050394068383],
        _TSIT5_B[:6],
    ],
    b=_TSIT5_B,
    b_err=[
        0.0017800110522257714, 0.0008164344596567469, -0.007880878010261995,
        0.1447110071732629, -0.5823571654525552, 0.45808210592918697, -1/66,
    ],
    # Tsitouras' interpolant, b_i(theta) = sum_j dense[i, j] theta**(j+1):
    #   b1 = -1.0530884977290216 t (t - 1.3299890189751412)
    #            (t^2 - 1.4364028541716351 t + 0.7139816917074209)
    #   b2 = 0.1017 t^2 (t^2 - 2.1966568338249754 t + 1.2949852507374631)
    #   b3 = 2.490627285651252793 t^2 (t^2 - 2.38535645472061657 t + 1.57803468208092486)
    #   b4 = -16.54810288924490272 (t - 1.21712927295533244) (t - 0.61620406037800089) t^2
    #   b5 = 47.37952196281928122 (t - 1.203071208372362603) (t - 0.658047292653547382) t^2
    #   b6 = -34.87065786149660974 (t - 1.2) (t - 0.666666666666666667) t^2
    #   b7 = 2.5 (t - 1) (t - 0.6) t^2
    # expanded exactly and rounded to float64 (the theta coefficient of b1 is
    # 1 - 2.6e-17 in the printed constants, i.e. 1.0 in float64).
    dense=[
        [1.0, -2.763706197274826, 2.9132554618219126, -1.0530884977290216],
        [0.0, 0.13169999999999998, -0.2234, 0.1017],
        [0.0, 3.9302962368947516, -5.941033872131505, 2.490627285651253],
        [0.0, -12.411077166933676, 30.33818863028232, -16.548102889244902],
        [0.0, 37.50931341651104, -88.1789048947664, 47.37952196281928],
        [0.0, -27.896526289197286, 65.09189467479366, -34.87065786149661],
        [0.0, 1.5, -4.0, 2.5],
    ],
)

# --------------------------------------------------------------------------
# Dormand--Prince 8(5,3) -- DOP853 (12 propagation stages, no dense output)
# --------------------------------------------------------------------------
# Decimals exactly as printed in Hairer's dop853.f (30 significant digits).

_DOP853_B = [
    5.42937341165687622380535766363e-2, 0.0, 0.0, 0.0, 0.0,
    4.45031289275240888144113950566, 1.89151789931450038304281599044,
    -5.8012039600105847814672114227, 3.1116436695781989440891606237e-1,
    -1.52160949662516078556178806805e-1, 2.01365400804030348374776537501e-1,
    4.47106157277725905176885569043e-2,
]

# 3rd-order embedded weights ("BHH" in dop853.f); E3 = b - bhh.
_DOP853_BHH = [
    0.244094488188976377952755905512, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
    0.733846688281611857341361741547, 0.0, 0.0,
    0.220588235294117647058823529412e-1,
]

DOPRI8 = _make(
    "dopri8", 8, 5,
    c=[
        0.0,
        0.526001519587677318785587544488e-01,
        0.789002279381515978178381316732e-01,
        0.118350341907227396726757197510,
        0.281649658092772603273242802490,
        0.333333333333333333333333333333,
        0.25,
        0.307692307692307692307692307692,
        0.651282051282051282051282051282,
        0.6,
        0.857142857142857142857142857142,
        1.0,
    ],
    a_rows=[
        [],
        [5.26001519587677318785587544488e-2],
        [1.97250569845378994544595329183e-2, 5.91751709536136983633785987549e-2],
        [2.95875854768068491816892993775e-2, 0.0, 8.87627564304205475450678981324e-2],
        [2.41365134159266685502369798665e-1, 0.0, -8.84549479328286085344864962717e-1,
         9.24834003261792003115737966543e-1],
        [3.7037037037037037037037037037e-2, 0.0, 0.0, 1.70828608729473871279604482173e-1,
         1.25467687566822425016691814123e-1],
        [3.7109375e-2, 0.0, 0.0, 1.70252211019544039314978060272e-1,
         6.02165389804559606850219397283e-2, -1.7578125e-2],
        [3.70920001185047927108779319836e-2, 0.0, 0.0, 1.70383925712239993810214054705e-1,
         1.07262030446373284651809199168e-1, -1.53194377486244017527936158236e-2,
         8.27378916381402288758473766002e-3],
        [6.24110958716075717114429577812e-1, 0.0, 0.0, -3.36089262944694129406857109825,
         -8.68219346841726006818189891453e-1, 2.75920996994467083049415600797e1,
         2.01540675504778934086186788979e1, -4.34898841810699588477366255144e1],
        [4.77662536438264365890433908527e-1, 0.0, 0.0, -2.48811461997166764192642586468,
         -5.90290826836842996371446475743e-1, 2.12300514481811942347288949897e1,
         1.52792336328824235832596922938e1, -3.32882109689848629194453265587e1,
         -2.03312017085086261358222928593e-2],
        [-9.3714243008598732571704021658e-1, 0.0, 0.0, 5.18637242884406370830023853209,
         1.09143734899672957818500254654, -8.14978701074692612513997267357,
         -1.85200656599969598641566180701e1, 2.27394870993505042818970056734e1,
         2.49360555267965238987089396762, -3.0467644718982195003823669022],
        [2.27331014751653820792359768449, 0.0, 0.0, -1.05344954667372501984066689879e1,
         -2.00087205822486249909675718444, -1.79589318631187989172765950534e1,
         2.79488845294199600508499808837e1, -2.85899827713502369474065508674,
         -8.87285693353062954433549289258, 1.23605671757943030647266201528e1,
         6.43392746015763530355970484046e-1],
    ],
    b=_DOP853_B,
    # E5: 5th-order error estimator (ER1..ER12 of dop853.f).
    b_err=[
        0.1312004499419488073250102996e-1, 0.0, 0.0, 0.0, 0.0,
        -0.1225156446376204440720569753e+1, -0.4957589496572501915214079952,
        0.1664377182454986536961530415e+1, -0.3503288487499736816886487290,
        0.3341791187130174790297318841, 0.8192320648511571246570742613e-1,
        -0.2235530786388629525884427845e-1,
    ],
    # E3 = b - bhh, differences taken in exact decimal arithmetic and rounded
    # once (SciPy subtracts the float64 values; entries 8 and 11 then differ by
    # one ulp from these).  All other entries equal b exactly.
    b_err3=[
        -0.18980075407240762, 0.0, 0.0, 0.0, 0.0,
        4.45031289275240888144113950566, 1.89151789931450038304281599044,
        -5.8012039600105847814672114227, -0.42268232132379197,
        -1.52160949662516078556178806805e-1, 2.01365400804030348374776537501e-1,
        0.022651792198360825,
    ],
)

# --------------------------------------------------------------------------

METHODS = ("euler", "midpoint", "heun", "rk4", "bosh3", "dopri5", "tsit5", "dopri8")

TABLEAUS = {
    t.name: t
    for t in (EULER, MIDPOINT, HEUN, RK4, BOSH3, DOPRI5, TSIT5, DOPRI8)
}

assert tuple(TABLEAUS) == METHODS
