"""`synthetic_text`: A/V frame sequences as in `synthetic`, T as token ids with spurious bias
words, an out-of-distribution test split and exact Bayes oracles on every split.

CIDer (Zhong et al., "Towards Robust Multimodal Emotion Recognition under Missing Modalities and
Distribution Shifts": §III-C on language bias, §IV-A on its OOD datasets) re-splits MOSI / MOSEI
so that words that co-occur with a label in training stop doing so at test time. This dataset
builds that shift into a generator whose posterior is known exactly.

Generative model (one utterance):

    y ~ Categorical(priors)
    A, V  frames as in `synthetic` (`LinearGaussianModel` restricted to A and V: shared latent
          z, private latents u_A, u_V; see `mmlab.data.synthetic`)
    k ~ Uniform{min_words, ..., max_words}                   number of words, independent of y
    w_1..w_k i.i.d. given y, each from p_s(w | y):            s = the split's law
        slot ~ Categorical(p_info, p_bias, 1 - p_info - p_bias)
        info:   with prob info_purity a word of class y's list, else any class word (uniform)
        bias:   train / valid / test ("iid" law): with prob bias_purity a bias word of class y,
                else any bias word; test_ood ("ood" law): `ood_bias` = "independent" (default) any
                bias word, whatever y; "shifted": the bias words of class (y + 1) mod C with prob
                bias_purity (anti-correlated with the training law)
        filler: any filler word (uniform), whatever y
    T = [CLS] w_1 .. w_k [SEP] [PAD] ...                     bert-base-uncased ids

Conditional independence makes the oracle exact: A, V and T are independent given y, and the
words are i.i.d. given y with a length that does not depend on y. Hence, for any frame mask and
any token mask,

    log p(y | A, V, T) = log p(y | observed A, V frames)     (`LinearGaussianModel.log_posterior`)
                         + sum over observed word tokens of log p_s(w_t | y)  + const.

A dropped token (filled with [UNK]) is marginalised out: sum_w p_s(w | y) = 1, so it adds a
constant; [CLS], [SEP], [PAD], [UNK], [MASK] and any id outside the generator's vocabulary add
nothing either (`token_log_likelihood`).

**The oracle knows the shift.** On ``test_ood`` it uses the ``ood`` law (bias words carry no
class information under "independent"), on every other split the ``iid`` law: it is the best
any classifier could do *knowing* the test distribution. A method trained on train / valid
cannot know it; the gap between a method and this oracle on ``test_ood`` (beyond its gap on
``test``) is how much of the spurious bias it learned. The model picks each row's law from its
sample id (`SyntheticTextModel.law_by_id`), which is how `BayesOracle` evaluates both test
splits with one object.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

from mmlab.data.dataset import MMDataset
from mmlab.data.registry import DatasetEntry, register_dataset
from mmlab.data.synthetic import IEMOCAP_CLASS_COUNTS, LinearGaussianModel, SyntheticConfig
from mmlab.data.tokens import CLS_ID, PAD_ID, SEP_ID, VOCAB_SIZE
from mmlab.errors import ConfigError, DataError
from mmlab.utils import numpy_rng

# Single-word-piece bert-base-uncased ids (checked against the bundled tokenizer in the tests).
WORD_IDS: dict[str, int] = {
    "angry": 4854, "furious": 9943, "mad": 5506, "annoyed": 11654, "hate": 5223, "rage": 7385, "upset": 6314,
    "happy": 3407, "glad": 5580, "joy": 6569, "love": 2293, "great": 2307, "wonderful": 6919, "smile": 2868,
    "okay": 3100, "fine": 2986, "normal": 3671, "usual": 5156, "plain": 5810, "ordinary": 6623, "average": 2779,
    "sad": 6517, "unhappy": 12511, "cry": 5390, "lonely": 9479, "sorry": 3374, "miss": 3335, "tears": 4000,
    "monday": 6928, "tuesday": 9857, "wednesday": 9317, "thursday": 9432, "friday": 5958,
    "red": 2417, "green": 2665, "yellow": 3756, "purple": 6379, "orange": 4589,
    "the": 1996, "a": 1037, "and": 1998, "of": 1997, "to": 2000, "it": 2009, "is": 2003, "was": 2001,
    "table": 2795, "window": 3332, "paper": 3259, "car": 2482, "house": 2160, "water": 2300, "chair": 3242,
    "street": 2395, "book": 2338, "door": 2341, "city": 2103, "morning": 2851, "coffee": 4157, "phone": 3042,
    "road": 2346, "tree": 3392, "box": 3482, "wall": 2813, "floor": 2723, "bus": 3902, "letter": 3661,
    "shop": 4497, "glass": 3221, "bottle": 5835,
}
INFO_WORDS = (  # ang, hap, neu, sad
    ("angry", "furious", "mad", "annoyed", "hate", "rage"),
    ("happy", "glad", "joy", "love", "wonderful", "smile"),
    ("okay", "fine", "normal", "usual", "plain", "ordinary"),
    ("sad", "unhappy", "cry", "lonely", "sorry", "tears"),
)
BIAS_WORDS = (("monday", "red"), ("tuesday", "green"), ("wednesday", "yellow"), ("thursday", "purple"))
FILLER_WORDS = ("the", "a", "and", "of", "to", "it", "is", "was", "table", "window", "paper", "car", "house", "water",
                "chair", "street", "book", "door", "city", "morning", "coffee", "phone", "road", "tree")
LAWS = ("iid", "ood")
OOD_SPLIT = "test_ood"


@dataclass
class SyntheticTextConfig:
    """Sizes and difficulty of `synthetic_text` (defaults: a method trains in minutes on a CPU).

    A / V keys mean what they mean in `SyntheticConfig` (one value per modality, A then V); the
    text keys are described in the module docstring. Words are names from `WORD_IDS`.
    """

    dims: tuple[int, int] = (24, 32)
    min_len: tuple[int, int] = (6, 6)
    max_len: tuple[int, int] = (16, 16)
    noise: tuple[float, float] = (2.0, 2.0)
    private_sep: tuple[float, float] = (0.65, 0.55)
    shared_sep: float = 0.35
    d_shared_class: int = 3
    d_shared_free: int = 4
    d_private: int = 3
    class_counts: tuple[int, ...] = IEMOCAP_CLASS_COUNTS
    info_words: tuple[tuple[str, ...], ...] = INFO_WORDS  # one list per class
    bias_words: tuple[tuple[str, ...], ...] = BIAS_WORDS  # one list per class
    filler_words: tuple[str, ...] = FILLER_WORDS
    min_words: int = 6  # content words per utterance (between [CLS] and [SEP])
    max_words: int = 14
    p_info: float = 0.12  # probability that a word is a class word
    p_bias: float = 0.08  # probability that a word is a bias word
    info_purity: float = 0.5
    bias_purity: float = 0.6
    ood_bias: str = "independent"  # test_ood bias words: "independent" of y | "shifted" to class y+1
    n_train: int = 3000
    n_valid: int = 500
    n_test: int = 1000
    n_test_ood: int = 1000
    seed: int = 0
    word_ids: dict[str, int] = field(default_factory=lambda: dict(WORD_IDS))

    def __post_init__(self) -> None:
        c = len(self.class_counts)
        for key in ("info_words", "bias_words"):
            lists = getattr(self, key)
            if len(lists) != c or any(len(ws) < 1 for ws in lists):
                raise ConfigError(f"synthetic_text.{key}: expected {c} non-empty word lists (one per class), got {lists}")
        if not self.filler_words:
            raise ConfigError("synthetic_text.filler_words: expected at least one word")
        words = [w for ws in (*self.info_words, *self.bias_words, self.filler_words) for w in ws]
        unknown = sorted({w for w in words if w not in self.word_ids})
        if unknown:
            raise ConfigError(f"synthetic_text words: {unknown} have no id in word_ids (expected names of {sorted(self.word_ids)})")
        if len(set(words)) != len(words):
            raise ConfigError("synthetic_text words: expected each word in one list only (class, bias and filler lists "
                              "must be disjoint)")
        ids = [self.word_ids[w] for w in words]
        bad = [i for i in ids if not 999 <= i < VOCAB_SIZE]
        if bad:
            raise ConfigError(f"synthetic_text.word_ids: expected ordinary word-piece ids in [999, {VOCAB_SIZE}), got {bad}")
        if not 1 <= self.min_words <= self.max_words:
            raise ConfigError(f"synthetic_text.min_words/max_words: expected 1 <= min <= max, got {self.min_words}, "
                              f"{self.max_words}")
        if self.p_info < 0 or self.p_bias < 0 or self.p_info + self.p_bias > 1:
            raise ConfigError(f"synthetic_text.p_info/p_bias: expected non-negative with sum <= 1, got {self.p_info}, "
                              f"{self.p_bias}")
        for key in ("info_purity", "bias_purity"):
            if not 0 <= getattr(self, key) < 1:
                raise ConfigError(f"synthetic_text.{key}: expected a number in [0, 1), got {getattr(self, key)}")
        if self.ood_bias not in ("independent", "shifted"):
            raise ConfigError(f"synthetic_text.ood_bias: expected 'independent' or 'shifted', got {self.ood_bias!r}")
        if min(self.n_train, self.n_valid, self.n_test, self.n_test_ood) < 1:
            raise ConfigError("synthetic_text.n_train/n_valid/n_test/n_test_ood: expected positive sizes")
        self.av_config()  # A / V keys checked by SyntheticConfig

    def av_config(self) -> SyntheticConfig:
        """The `synthetic` configuration of the A and V modalities."""
        return SyntheticConfig(
            modalities=("A", "V"), dims=self.dims, min_len=self.min_len, max_len=self.max_len, noise=self.noise,
            private_sep=self.private_sep, shared_sep=self.shared_sep, d_shared_class=self.d_shared_class,
            d_shared_free=self.d_shared_free, d_private=self.d_private, class_counts=self.class_counts,
            n_train=self.n_train, n_valid=self.n_valid, n_test=self.n_test, seed=self.seed,
        )


PRESETS: dict[str, SyntheticTextConfig] = {
    "default": SyntheticTextConfig(),
    # tiny: for tests and smoke runs.
    "tiny": SyntheticTextConfig(dims=(6, 8), min_len=(3, 3), max_len=(6, 6), min_words=3, max_words=8,
                                n_train=300, n_valid=100, n_test=200, n_test_ood=200),
}


def split_law(split: str) -> str:
    """The token law of a split: ``ood`` on ``test_ood``, ``iid`` on train / valid / test."""
    if split == OOD_SPLIT:
        return "ood"
    if split in ("train", "valid", "test"):
        return "iid"
    raise DataError(f"synthetic_text: split {split!r} has no law (expected train, valid, test or {OOD_SPLIT})")


@dataclass
class SyntheticTextModel:
    """The generator of `synthetic_text` and its exact oracle (A / V part: ``av``)."""

    cfg: SyntheticTextConfig
    av: LinearGaussianModel
    support: np.ndarray  # (V,) the word ids the generator draws
    probs: dict[str, np.ndarray]  # law -> (C, V) p_law(support[v] | y)
    split_of: dict[str, str] = field(default_factory=dict)  # sample id -> split (set by make_synthetic_text)
    _tables: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # law -> `log_table` cache
    law_by_id = True  # `BayesOracle` passes the batch's sample ids to `log_posterior`
    modalities = ("A", "V", "T")

    @classmethod
    def from_config(cls, cfg: SyntheticTextConfig) -> "SyntheticTextModel":
        c = len(cfg.class_counts)
        info, bias = cfg.info_words, cfg.bias_words
        support = np.array([cfg.word_ids[w] for ws in (*info, *bias, cfg.filler_words) for w in ws], np.int64)
        n_info, n_bias = sum(map(len, info)), sum(map(len, bias))
        # which class list each support word belongs to (-1 for filler)
        owner_info = np.concatenate([np.full(len(ws), k) for k, ws in enumerate(info)])
        owner_bias = np.concatenate([np.full(len(ws), k) for k, ws in enumerate(bias)])
        size_info = np.array([len(ws) for ws in info], float)
        size_bias = np.array([len(ws) for ws in bias], float)
        p_fill = (1.0 - cfg.p_info - cfg.p_bias) / len(cfg.filler_words)

        def table(bias_class: np.ndarray | None) -> np.ndarray:
            """(C, V) word law; ``bias_class[y]`` is the class whose bias words y favours (None: none)."""
            p = np.zeros((c, len(support)))
            for y in range(c):
                p[y, :n_info] = cfg.p_info * (cfg.info_purity * (owner_info == y) / size_info[y]
                                              + (1 - cfg.info_purity) / n_info)
                if bias_class is None:
                    p[y, n_info:n_info + n_bias] = cfg.p_bias / n_bias
                else:
                    b = bias_class[y]
                    p[y, n_info:n_info + n_bias] = cfg.p_bias * (cfg.bias_purity * (owner_bias == b) / size_bias[b]
                                                                 + (1 - cfg.bias_purity) / n_bias)
                p[y, n_info + n_bias:] = p_fill
            return p

        ood = None if cfg.ood_bias == "independent" else (np.arange(c) + 1) % c
        return cls(cfg, LinearGaussianModel.from_config(cfg.av_config()), support,
                   {"iid": table(np.arange(c)), "ood": table(ood)})

    @property
    def priors(self) -> np.ndarray:
        return self.av.priors

    def log_table(self, law: str) -> np.ndarray:
        """(C, VOCAB_SIZE) log p_law(w | y) on the support, 0 elsewhere (ids that carry nothing)."""
        if law not in LAWS:
            raise DataError(f"synthetic_text: law {law!r}: expected one of {LAWS}")
        if law not in self._tables:
            out = np.zeros((len(self.priors), VOCAB_SIZE))
            out[:, self.support] = np.log(self.probs[law])
            self._tables[law] = out
        return self._tables[law]

    # ------------------------------------------------------------------ sampling
    def sample_tokens(self, y: np.ndarray, law: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Token rows ``[CLS] w.. [SEP] [PAD]..`` (N, max_words + 2) int64 and lengths (N,) for labels ``y``."""
        cfg, n = self.cfg, len(y)
        k = rng.integers(cfg.min_words, cfg.max_words + 1, size=n)
        words = np.zeros((n, cfg.max_words), np.int64)
        for c, p in enumerate(self.probs[law]):
            rows = np.flatnonzero(y == c)
            words[rows] = rng.choice(self.support, size=(len(rows), cfg.max_words), p=p)
        ids = np.full((n, cfg.max_words + 2), PAD_ID, np.int64)
        ids[:, 0] = CLS_ID
        pos = np.arange(cfg.max_words)[None]
        ids[:, 1:-1] = np.where(pos < k[:, None], words, PAD_ID)
        ids[np.arange(n), k + 1] = SEP_ID
        return ids, k + 2

    def sample(self, n: int, law: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """``n`` utterances under ``law``: y, latents h, A / V frames and lengths, token ids and lengths."""
        s = self.av.sample(n, rng)
        s["x_T"], s["len_T"] = self.sample_tokens(s["y"], law, rng)
        return s

    # ------------------------------------------------------------------ oracle
    def token_log_likelihood(self, ids: np.ndarray, obs: np.ndarray, law: str | Sequence[str]) -> np.ndarray:
        """(N, C) sum over observed positions of log p_law(w_t | y); ``law`` one name or one per row."""
        ids, obs = np.asarray(ids), np.asarray(obs, bool)
        if ids.ndim != 2 or ids.dtype.kind not in "iu" or obs.shape != ids.shape:
            raise DataError(f"oracle: modality 'T' expects token ids (N, T) int with an (N, T) mask, got "
                            f"{ids.dtype} {ids.shape} and {obs.shape}")
        if ids.size and (ids.min() < 0 or ids.max() >= VOCAB_SIZE):
            raise DataError(f"oracle: token ids must lie in [0, {VOCAB_SIZE}), got [{ids.min()}, {ids.max()}]")
        laws = np.broadcast_to(np.asarray(law, dtype=object), (len(ids),))
        out = np.zeros((len(ids), len(self.priors)))
        for name in set(laws.tolist()):
            rows = np.flatnonzero(laws == name)
            per_pos = self.log_table(name)[:, ids[rows]]  # (C, n, T)
            out[rows] = (per_pos * obs[rows][None]).sum(-1).T
        return out

    def laws_of(self, split: str | Sequence[str] | None = None, ids: Sequence[str] | None = None,
                n: int = 0) -> np.ndarray:
        """The law of each of ``n`` rows, from ``split`` (one name or one per row) or sample ``ids``."""
        if split is not None:
            names = np.broadcast_to(np.asarray(split, dtype=object), (n,))
        elif ids is not None:
            unknown = [i for i in ids if i not in self.split_of]
            if unknown:
                raise DataError(f"synthetic_text oracle: sample id {unknown[0]!r} is not a row of the dataset this "
                                "model generated; pass split= to choose the law")
            names = np.array([self.split_of[i] for i in ids], dtype=object)
        else:
            raise DataError("synthetic_text oracle: the word law differs between test and test_ood; pass split= "
                            "(e.g. 'test', 'test_ood') or the rows' sample ids=")
        if len(names) != n:
            raise DataError(f"synthetic_text oracle: expected {n} split names or ids, got {len(names)}")
        return np.array([split_law(str(s)) for s in names], dtype=object)

    def log_posterior(self, feats: dict[str, np.ndarray], obs: dict[str, np.ndarray],
                      split: str | Sequence[str] | None = None, ids: Sequence[str] | None = None) -> np.ndarray:
        """Exact log p(y | observed A, V frames, observed tokens), (N, C), each row under its split's law.

        ``feats["T"]`` are token ids (N, T); ``obs["T"]`` marks the observed positions (a dropped
        token carries nothing, whatever id fills it). A modality absent from ``feats`` is unobserved.
        """
        unknown = sorted(set(feats) - set(self.modalities))
        if unknown:
            raise DataError(f"synthetic_text oracle: unknown modalities {unknown}; have {self.modalities}")
        no_mask = sorted(set(feats) - set(obs))
        if no_mask:
            raise DataError(f"synthetic_text oracle: obs has no mask for {no_mask}; expected one (N, T) mask per modality")
        av = {m: feats[m] for m in ("A", "V") if m in feats}
        n = len(next(iter(obs.values())))
        score = self.av.log_posterior(av, {m: obs[m] for m in av}) if av else np.log(self.priors)[None].repeat(n, 0)
        if "T" in feats:
            score = score + self.token_log_likelihood(feats["T"], obs["T"], self.laws_of(split, ids, n))
        return score - np.logaddexp.reduce(score, axis=1, keepdims=True)


def make_synthetic_text(cfg: SyntheticTextConfig | None = None, preset: str | None = None, **overrides) -> MMDataset:
    """Generate `synthetic_text` (splits train / valid / test / test_ood); ``info["oracle"]`` holds
    its `SyntheticTextModel`."""
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"synthetic_text preset: expected one of {sorted(PRESETS)}, got {preset!r}")
        cfg = PRESETS[preset]
    cfg = cfg or SyntheticTextConfig()
    if overrides:
        unknown = sorted(set(overrides) - set(SyntheticTextConfig.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"synthetic_text: unknown keys {unknown}; expected keys of SyntheticTextConfig")
        cfg = replace(cfg, **overrides)
    model = SyntheticTextModel.from_config(cfg)
    n_iid = cfg.n_train + cfg.n_valid + cfg.n_test
    a = model.sample(n_iid, "iid", numpy_rng(cfg.seed, "synthetic_text", "iid"))
    b = model.sample(cfg.n_test_ood, "ood", numpy_rng(cfg.seed, "synthetic_text", OOD_SPLIT))
    split = np.array(["train"] * cfg.n_train + ["valid"] * cfg.n_valid + ["test"] * cfg.n_test
                     + [OOD_SPLIT] * cfg.n_test_ood)
    ids = np.array([f"syt-{i:05d}" for i in range(len(split))])
    model.split_of = dict(zip(ids.tolist(), split.tolist()))

    def cat(key: str) -> np.ndarray:
        return np.concatenate([a[key], b[key]])

    names = ["ang", "hap", "neu", "sad"] if len(cfg.class_counts) == 4 else [f"c{k}" for k in range(len(cfg.class_counts))]
    mods = ("A", "V", "T")
    return MMDataset(
        name="synthetic_text",
        modalities=mods,
        feats={m: cat(f"x_{m}") for m in mods},
        lengths={m: cat(f"len_{m}").astype(np.int64) for m in mods},
        y=cat("y").astype(np.int64),
        split=split,
        ids=ids,
        classes=names,
        info={"oracle": model, "config": cfg, "latents": cat("h")},
    )


register_dataset(
    DatasetEntry(
        name="synthetic_text",
        loader=make_synthetic_text,
        description="A/V frames as in synthetic, T as token ids with spurious bias words; test_ood split; exact oracles",
        card="synthetic_text.md",
        bundled=True,
    )
)
