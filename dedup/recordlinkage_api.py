"""The engine's parts as parts of the Python Record Linkage Toolkit (``recordlinkage``), for a data
scientist who composes and evaluates a pipeline the toolkit's way:

    P = records(df, spec)                                        # normalised, in the engine's order
    pairs = SpecBlocking(spec).index(P)                          # the engine's candidate pairs
    X = recordlinkage.Compare(features(spec)).compute(pairs, P)  # its comparison levels (and tf)
    fs = FellegiSunterClassifier(spec, records=P).fit(X)         # its Fellegi–Sunter model, learned as it does
    matches = fs.predict(X)                                      # its matches: threshold, then the guards
    recordlinkage.precision(archive_pairs(truth), archive_pairs(matches, P))

(docs/how-it-works.md shows it on FEBRL.)

Adapters, not a second engine: each class wraps the function the engine itself calls — a feature
its comparison kind's ``compare`` (``compare.py``, ``kinds.py``), the index ``blocking.candidate_pairs``,
the classifier ``Deduplicator.training``'s estimation and ``engine.scores`` / ``engine.decide`` — so the
pipeline gives the engine's pairs, and the engine keeps calling its own code directly (no pandas
MultiIndex or per-feature frame on its path). The engine deduplicates one table: to link two, concatenate
them. Steward decisions and clustering stay the engine's (``Deduplicator``).

The extension points are the toolkit's own, but underscored (``RL_PRIVATE``): pyproject.toml pins
its minor series, and tests/dedup/test_recordlinkage_api.py resolves each one, so an upgrade that moves
one fails there by name.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from recordlinkage.base import BaseClassifier, BaseCompareFeature, BaseIndexAlgorithm

from . import blocking, kinds
from .compare import field_columns
from .deduplicator import Deduplicator
from .engine import Candidates, decide, record_order, scores
from .model import FSModel, Scorer, SupervisedModel, agreed_tf
from .normalise import block_column, prepare
from .spec import FieldSpec, Spec

# the toolkit's underscored hooks the classes below override (its base classes call them); a new one belongs here
RL_PRIVATE = (
    "recordlinkage.base.BaseIndexAlgorithm._dedup_index",
    "recordlinkage.base.BaseIndexAlgorithm._link_index",
    "recordlinkage.base.BaseCompareFeature._compute_vectorized",
    "recordlinkage.base.BaseClassifier._fit",
    "recordlinkage.base.BaseClassifier._predict",
    "recordlinkage.base.BaseClassifier._prob_match",
)
TF = "tf"  # the label of the term-frequency feature (the classifier reads it by this name)
POSITION = "record"  # the index's name when archive numbers repeat: the record's position


def records(df: pd.DataFrame, spec: Spec) -> pd.DataFrame:
    """The records of ``df`` normalised for matching (``normalise.prepare``), in the engine's order
    (``engine.record_order``: the same result whatever order the rows came in), indexed by archive
    number — or by position (``record``) where the MPI holds several rows under one number, since
    the toolkit needs one row per label. The column ``key`` holds the archive number either way."""
    P = prepare(df.iloc[record_order(df, spec)].reset_index(drop=True), spec)
    key = P["key"]
    if key.notna().all() and key.is_unique:
        return P.set_index(pd.Index(key.to_numpy(dtype=object), name=spec.key))
    return P.rename_axis(POSITION)


def archive_pairs(links: pd.MultiIndex | pd.Series | pd.DataFrame, records_: pd.DataFrame | None = None) -> pd.MultiIndex:
    """Pairs as sets of two archive numbers, for the toolkit's metrics: each pair once, the smaller
    number first, none of a number with itself (``evaluate`` counts them so). ``links``: record pairs
    (or a prediction: a 0/1 Series or a frame indexed by pairs); ``records_``: the records the
    labels index (needed when they are positions), None when the labels are archive numbers. The
    toolkit's own FEBRL links come in either order, so truth and prediction both go through here."""
    if isinstance(links, pd.Series) and links.dtype != object and set(np.unique(links.to_numpy())) <= {0, 1}:
        links = links[links.astype(bool)]
    index = links if isinstance(links, pd.MultiIndex) else links.index
    a = index.get_level_values(0).to_numpy(dtype=object)
    b = index.get_level_values(1).to_numpy(dtype=object)
    if records_ is not None:
        key = records_["key"]
        a, b = key.loc[a].to_numpy(dtype=object), key.loc[b].to_numpy(dtype=object)
    a, b = a.astype(str), b.astype(str)
    lo, hi = np.where(a < b, a, b), np.where(a < b, b, a)
    out = pd.MultiIndex.from_arrays([lo[lo != hi], hi[lo != hi]], names=["left", "right"])
    return out.unique()


# -- blocking ---------------------------------------------------------------------------------------
class SpecBlocking(BaseIndexAlgorithm):
    """The spec's blocking passes as a toolkit index algorithm: the engine's candidate pairs
    (``blocking.candidate_pairs``: every pass, without repeats, blocks over ``max_block_size``
    skipped) of records normalised by ``records``. Pairs come in the toolkit's lower-triangle order
    (the later record first), as its own index algorithms give them, so a ``recordlinkage.Index`` may
    take their union with another algorithm's."""

    name = "spec blocking"
    description = "healthqa's blocking passes (dedup/blocking.py)"

    def __init__(self, spec: Spec, **kwargs: Any):
        super().__init__(**kwargs)
        self.spec = spec

    def _dedup_index(self, df_a: pd.DataFrame) -> pd.MultiIndex:
        cols = ["key"] + [block_column(p) for p in range(len(self.spec.blocking))]
        missing = [c for c in cols if c not in df_a]
        if missing:
            raise ValueError(f"the records are not normalised for this spec (no column {', '.join(missing)}): "
                             "index recordlinkage_api.records(df, spec), not the raw table")
        chunks = list(blocking.candidate_pairs(df_a.reset_index(drop=True), self.spec))
        i = np.concatenate([c[0] for c in chunks]) if chunks else np.array([], dtype=np.int64)
        j = np.concatenate([c[1] for c in chunks]) if chunks else np.array([], dtype=np.int64)
        labels = df_a.index
        return pd.MultiIndex.from_arrays([labels[j], labels[i]])

    def _link_index(self, df_a: pd.DataFrame, df_b: pd.DataFrame) -> pd.MultiIndex:
        raise NotImplementedError("the engine deduplicates one table: concatenate the two and index them together")


# -- comparisons ------------------------------------------------------------------------------------
class CompareKind(BaseCompareFeature):
    """One field's comparison levels, as its comparison kind computes them (``kinds.get(kind).compare``,
    the function ``compare.levels`` calls): an int8 level per pair, -1 where a side is missing. Reads
    the field's derived columns of the normalised records (``compare.field_columns``). ``field``: a
    spec's field, or the name of a field of this kind (``thresholds``, ``swap_with``: as a spec says
    them). Plugin kinds use this class; the built-in ones have a subclass each below."""

    kind: str | None = None  # the subclasses' own kind

    def __init__(self, field: FieldSpec | str, *, label: str | None = None, thresholds: dict[str, float] | None = None,
                 swap_with: str | None = None):
        if isinstance(field, str):
            if self.kind is None:
                raise ValueError("CompareKind needs a spec's field (FieldSpec): a field name says nothing of its kind")
            field = FieldSpec(name=field, kind=self.kind, column=field, thresholds=thresholds or {}, swap_with=swap_with)
        elif self.kind is not None and field.kind != self.kind:
            raise ValueError(f"field {field.name} is of kind {field.kind!r}, not {self.kind!r}: use features(spec)")
        self.field = field
        self.columns = field_columns(field)
        super().__init__(self.columns, self.columns, label=label or field.name)

    def _compute_vectorized(self, *args: pd.Series) -> np.ndarray:
        n = len(self.columns)
        left = {c: s.to_numpy() for c, s in zip(self.columns, args[:n])}
        right = {c: s.to_numpy() for c, s in zip(self.columns, args[n:])}
        return kinds.get(self.field.kind).compare(self.field, left, right)


class CompareIdNumberCN(CompareKind):
    """GB 11643 ID numbers: equal, one typing error in the area or birth date, one edit apart (a
    typing error, or adjacent digits swapped where the check character cannot tell), different, both
    valid and different."""

    kind = "id_number_cn"


class CompareNameZh(CompareKind):
    """Chinese names: equal, the same pinyin (heteronyms included), given-name characters swapped, the
    same pinyin in another order, a given-name character dropped, similar characters (Jaro–Winkler)."""

    kind = "name_zh"


class CompareName(CompareKind):
    """Latin-script names: equal, entered in each other's fields (``swap_with``), close, similar."""

    kind = "name"


class CompareString(CompareKind):
    kind = "string"


class CompareDate(CompareKind):
    """Birth dates: equal, the day one off or its digits reversed, a lunar-calendar shift, day and month
    swapped, the same month on another day, year or month only (imputed)."""

    kind = "date"


class ComparePhone(CompareKind):
    kind = "phone"


class CompareAddress(CompareKind):
    """Addresses (district prefix removed by normalisation): equal, similar (Indel)."""

    kind = "address"


class CompareExact(CompareKind):
    kind = "exact"


BUILTIN_FEATURES: dict[str, type[CompareKind]] = {
    c.kind: c for c in (CompareIdNumberCN, CompareNameZh, CompareName, CompareString, CompareDate, ComparePhone,
                        CompareAddress, CompareExact) if c.kind is not None
}


class CompareTermFrequency(BaseCompareFeature):
    """The term frequency of a ``tf`` field's value for each pair (``model.agreed_tf``): what weighs an
    agreement on a common name less than on a rare one. Labelled ``tf``, as the classifier reads it."""

    def __init__(self, field: str, label: str = TF):
        self.field = field
        super().__init__(f"{field}__tf", f"{field}__tf", label=label)

    def _compute_vectorized(self, left: pd.Series, right: pd.Series) -> np.ndarray:
        return agreed_tf(left.to_numpy(dtype=float), right.to_numpy(dtype=float))


def features(spec: Spec) -> list[BaseCompareFeature]:
    """The comparisons of a spec, for ``recordlinkage.Compare``: one feature per field, labelled by its
    name, in the spec's order, and the term frequency (``tf``) when a field asks for it."""
    out: list[BaseCompareFeature] = [BUILTIN_FEATURES.get(f.kind, CompareKind)(f) for f in spec.fields]
    out += [CompareTermFrequency(f.name) for f in spec.fields if f.tf][:1]  # one per spec (model.pair_tf)
    return out


# -- classification ---------------------------------------------------------------------------------
class FellegiSunterClassifier(BaseClassifier):
    """The engine's model as a toolkit classifier: ``fit`` / ``predict`` / ``prob`` / ``fit_predict``
    on the comparison vectors of ``features(spec)`` (columns by field name, and ``tf``).

    ``fit`` learns as a run of the engine does, in its order and from the same random stream
    (``seed``): u from random pairs of ``records``, m by EM on the spec's training sessions, the prior
    from the candidates' vectors — so it needs the normalised ``records`` (``records(df, spec)``).
    ``model``: a model learned before (a run's ``result.model``), used as it is: no fit needed, and
    ``fit`` learns only what labels teach, on top of its Fellegi–Sunter part. With ``match_index`` (the true matches among the
    vectors' pairs, in either order), the model the stewards' decisions train (``model.SupervisedModel``)
    is fitted on top of the Fellegi–Sunter one, as a run does once stewards decided enough pairs.
    ``predict``: 1 for a match — the score at or above the spec's ``match`` threshold and no guard
    lowering it (``engine.decide``); ``decide`` gives the three-way decision (match / review / non_match)."""

    def __init__(self, spec: Spec, *, records: pd.DataFrame | None = None, model: Scorer | None = None, seed: int = 1):
        self.spec = spec
        self.records = records
        self.seed = seed
        self.given = model
        self.model: Scorer | None = model  # what scores: the Fellegi–Sunter model, or the supervised one on top

    # the toolkit's public verbs, after the vectors are put in the spec's order (its base class hands
    # the private ones bare arrays, so the columns' order is the only name they have)
    def fit(self, comparison_vectors: pd.DataFrame, match_index: pd.MultiIndex | None = None) -> FellegiSunterClassifier:
        if isinstance(match_index, pd.MultiIndex):  # the toolkit's FEBRL links come in either order, its pairs in one
            match_index = match_index.append(match_index.swaplevel()).unique()
        super().fit(self._vectors(comparison_vectors), match_index)
        return self

    def fit_predict(self, comparison_vectors: pd.DataFrame, match_index: pd.MultiIndex | None = None):
        return self.fit(comparison_vectors, match_index).predict(comparison_vectors)

    def predict(self, comparison_vectors: pd.DataFrame):
        return super().predict(self._vectors(comparison_vectors))

    def prob(self, comparison_vectors: pd.DataFrame, return_type: str | None = None) -> pd.Series:
        return super().prob(self._vectors(comparison_vectors), return_type)

    def decide(self, comparison_vectors: pd.DataFrame) -> pd.Series:
        """match, review or non_match per pair, as the engine decides before the stewards' verdicts."""
        X = self._vectors(comparison_vectors)
        lv, tf = self._split(X.to_numpy())
        return pd.Series(decide(self.spec, self._score(lv, tf), lv), index=X.index, name="decision")

    def _vectors(self, X: pd.DataFrame) -> pd.DataFrame:
        cols = [f.name for f in self.spec.fields] + ([TF] if any(f.tf for f in self.spec.fields) else [])
        missing = [c for c in cols if c not in X.columns]
        if missing:
            raise ValueError(f"the comparison vectors have no column {', '.join(map(repr, missing))}: "
                             "compare with recordlinkage_api.features(spec)")
        return X[cols]

    def _split(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        n = len(self.spec.fields)
        lv = X[:, :n].astype(np.int8)
        return lv, (X[:, n].astype(float) if X.shape[1] > n else None)

    def _score(self, lv: np.ndarray, tf: np.ndarray | None) -> np.ndarray:
        if self.model is None:
            raise ValueError("the classifier has no model yet: fit it first, or give it a learned one (model=)")
        return scores(self.model, lv, tf)

    def _fit(self, X: np.ndarray, y: np.ndarray | None = None) -> None:
        lv, tf = self._split(X)
        given = self.given.base if isinstance(self.given, SupervisedModel) else self.given
        fs = given if isinstance(given, FSModel) else self._learn(lv, tf)
        self.model = self.given if self.given is not None and y is None else fs
        if y is not None:  # too few labels of either kind: the Fellegi–Sunter model alone (as a run does)
            sup = SupervisedModel(self.spec, fs)
            self.model = sup if sup.fit(lv, np.asarray(y, dtype=int), tf) else fs

    def _learn(self, lv: np.ndarray, tf: np.ndarray | None) -> FSModel:
        """The Fellegi–Sunter model a run of the engine learns on these records and candidates."""
        if self.records is None:
            raise ValueError("fitting learns u and m from the records: FellegiSunterClassifier(spec, records=records(df, spec))")
        P = self.records.reset_index(drop=True)
        dd = Deduplicator(self.spec, seed=self.seed)
        rng = np.random.default_rng(self.seed)  # one stream, in the engine's order (Deduplicator.deduplicate)
        dd.training.estimate_u(P, rng)
        dd.training.estimate_m(P, rng)
        none = np.array([], dtype=np.int64)
        dd.training.estimate_prior(Candidates(none, none, lv, tf if tf is not None else np.array([])), len(P), rng)
        return dd.fs_model

    def _predict(self, X: np.ndarray) -> np.ndarray:
        lv, tf = self._split(X)
        return (decide(self.spec, self._score(lv, tf), lv) == "match").astype(int)

    def _prob_match(self, X: np.ndarray) -> np.ndarray:
        return self._score(*self._split(X))

    # what the model learned, as the toolkit's FellegiSunter names it (per field, per level name)
    @property
    def p(self) -> float:
        return float(self._fs().prior)

    @property
    def m_probs(self) -> dict[str, dict[str, float]]:
        return self._per_level("m")

    @property
    def u_probs(self) -> dict[str, dict[str, float]]:
        return self._per_level("u")

    @property
    def weights(self) -> dict[str, dict[str, float]]:
        """Per field and level: log2(m/u), the evidence in bits (the toolkit's ``log_weights`` are in nats)."""
        return self._per_level("weight")

    def _fs(self) -> FSModel:
        m = self.model.base if isinstance(self.model, SupervisedModel) else self.model
        if not isinstance(m, FSModel):
            raise ValueError("the classifier has no Fellegi–Sunter model yet: fit it first")
        return m

    def _per_level(self, what: str) -> dict[str, dict[str, float]]:
        return {d["field"]: {lv["level"]: lv[what] for lv in d["levels"]} for d in self._fs().describe()}
