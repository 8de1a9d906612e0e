"""GB 11643 identity numbers, vectorised for generating millions of them.

Only the generator uses this. Its check character is deliberately a second implementation, apart
from the one validation and dedup use (``healthqa.standards.check_characters``): the generator is
the truth oracle the audit is measured against, so it must not share the code under test (the tests
check what is generated here against python-stdnum, not against either file).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])
CHECK = np.array(list("10X98765432"))
FULLWIDTH = str.maketrans("0123456789X", "０１２３４５６７８９Ｘ")


def digits(first17: pd.Series) -> np.ndarray:
    """(n, 17) matrix of the digits of 17-character digit strings."""
    raw = np.frombuffer("".join(first17).encode("ascii"), dtype=np.uint8).reshape(-1, 17)
    return (raw - ord("0")).astype(np.int64)


def check_chars(first17: pd.Series) -> np.ndarray:
    if len(first17) == 0:
        return np.array([], dtype="<U1")
    return CHECK[(digits(first17) @ WEIGHTS) % 11]


def make_ids(area: pd.Series, birth: pd.Series, seq: np.ndarray) -> pd.Series:
    """18-digit numbers from area codes, birth dates (datetime64) and 3-digit sequence numbers."""
    first17 = area.str.cat([birth.dt.strftime("%Y%m%d"), pd.Series(seq, index=area.index).map("{:03d}".format)])
    return first17 + check_chars(first17)


def to_legacy15(ids: pd.Series) -> pd.Series:
    """The 15-digit form issued before 1999: no century, no check character."""
    return ids.str[:6] + ids.str[8:17]
