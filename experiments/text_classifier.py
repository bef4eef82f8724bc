"""A small text classifier explained at its embedding layer: one number per token, planted words recovered.

Usage:  python experiments/text_classifier.py --out results/text [--quick] [--seed 0]

1. Data (built here): sentences of L token ids from a vocabulary of 64: id 0 is PAD, ids 1..8 are
   sentiment words ("good" +1, "nice" +1, "great" +2, "love" +2, "bad" -1, "dull" -1, "awful" -2,
   "hate" -2), the rest neutral filler ("w9".."w63"). Each sentence gets 1 to 3 sentiment words at random
   positions; its label is 1 when the sum of their weights is positive (sentences that would sum to 0
   have their last word's sign flipped, so every label is decided by the planted words).
2. A Flax model: embedding (dim 16) -> tiny attention pooling (a softmax over positions of a learned score
   of each embedding) -> dense 32 relu -> one logit; Optax Adam on sigmoid cross-entropy. PAD never occurs
   in training; its embedding row is set to zero, so the all-PAD baseline is the zero embedding.
3. ``jaxig.layer_integrated_gradients`` with ``body`` = the embedding lookup and ``head`` = the rest
   (split with Flax's ``method=``), on integer token ids, baseline = the PAD id: attributions
   [B, L, 16] in embedding space, summed over the embedding dimension to one number per token (completeness
   holds per sentence: the token values sum to logit(x) - logit(all PAD)).
4. Recovery of the planted words: the share of sum |attribution| on them, the top-k hit rate (k = number of
   planted words in the sentence), their mean rank by |attribution| (1 = largest), and whether each planted
   word's attribution has its word's sign; per word, the mean attribution (stronger words should score more).

Writes metrics.csv (metric, value), words.csv (per sentiment word: weight, occurrences, mean attribution,
sign agreement, mean rank), tokens.csv (the shown sentences, one row per token) and tokens.png (per-token
bars for a few sentences) to --out.
"""

from __future__ import annotations

import argparse
import csv
import pathlib
import time

import matplotlib

matplotlib.use("Agg")
import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import jaxig  # noqa: E402

VOCAB = 64
PAD = 0
WORDS = {1: ("good", 1.0), 2: ("nice", 1.0), 3: ("great", 2.0), 4: ("love", 2.0),
         5: ("bad", -1.0), 6: ("dull", -1.0), 7: ("awful", -2.0), 8: ("hate", -2.0)}
WEIGHT = np.zeros(VOCAB)
for _id, (_, _w) in WORDS.items():
    WEIGHT[_id] = _w


def word(i):
    return "PAD" if i == PAD else WORDS[i][0] if i in WORDS else f"w{i}"


def make_data(rng, n, length):
    """Returns (ids (n, L) int32, labels (n,) float32): filler plus 1-3 planted sentiment words."""
    ids = rng.integers(len(WORDS) + 1, VOCAB, size=(n, length))
    for b in range(n):
        k = rng.integers(1, 4)
        pos = rng.choice(length, k, replace=False)
        w = rng.integers(1, len(WORDS) + 1, size=k)
        if WEIGHT[w].sum() == 0:  # a tie: flip the last word to its opposite-signed partner
            w[-1] = w[-1] + 4 if w[-1] <= 4 else w[-1] - 4
        ids[b, pos] = w
    return ids.astype(np.int32), (WEIGHT[ids].sum(1) > 0).astype(np.float32)


class TextClassifier(nn.Module):
    dim: int = 16

    def setup(self):
        self.embedding = nn.Embed(VOCAB, self.dim)
        self.score = nn.Dense(1)
        self.hidden = nn.Dense(32)
        self.out = nn.Dense(1)

    def embed(self, ids):  # (B, L) int -> (B, L, dim)
        return self.embedding(ids)

    def head(self, h):  # (B, L, dim) -> one logit per sentence (B,)
        attn = jax.nn.softmax(self.score(h)[..., 0], axis=1)
        pooled = jnp.einsum("bl,bld->bd", attn, h)
        return self.out(nn.relu(self.hidden(pooled)))[:, 0]

    def __call__(self, ids):
        return self.head(self.embed(ids))


def train(seed, ids, y, steps, batch=128, lr=1e-2):
    """Returns (model, params): Adam on sigmoid cross-entropy, one jitted lax.scan; PAD's row zeroed."""
    model = TextClassifier()
    # an "rbg" key and NumPy minibatch indices: Flax's init splits its key once per parameter, and XLA
    # takes seconds to compile those threefry splits on CPU (the fit is the same with either PRNG)
    params = jax.jit(model.init)(jax.random.key(seed, impl="rbg"), ids[:1])
    batches = np.random.default_rng(seed).integers(0, ids.shape[0], (steps, batch))
    opt = optax.adam(optax.cosine_decay_schedule(lr, steps))

    def loss(p, xb, yb):
        return optax.sigmoid_binary_cross_entropy(model.apply(p, xb), yb).mean()

    @jax.jit
    def run(params):
        def step(carry, idx):
            p, s = carry
            u, s = opt.update(jax.grad(loss)(p, ids[idx], y[idx]), s, p)
            return (optax.apply_updates(p, u), s), None

        (p, _), _ = jax.lax.scan(step, (params, opt.init(params)), batches)
        return p

    params = run(params)
    table = params["params"]["embedding"]["embedding"]
    params = {"params": dict(params["params"], embedding={"embedding": table.at[PAD].set(0.0)})}
    return model, params


def planted_recovery(tok_attr, ids):
    """Returns (share on planted, top-k hit, mean rank of planted, per-occurrence (id, attr, rank) arrays)."""
    a = np.abs(tok_attr)
    planted = WEIGHT[ids] != 0
    share = (a * planted).sum(1) / np.maximum(a.sum(1), 1e-30)
    rank = np.argsort(np.argsort(-a, axis=1), axis=1) + 1  # 1 = largest |attribution|
    k = planted.sum(1)
    hit = np.array([np.mean(planted[b][np.argsort(-a[b])[:k[b]]]) for b in range(len(ids))])
    b_idx, l_idx = np.nonzero(planted)
    occ = (ids[b_idx, l_idx], tok_attr[b_idx, l_idx], rank[b_idx, l_idx])
    return share, hit, rank[planted].mean(), occ


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="directory for the CSV files and the figure")
    ap.add_argument("--quick", action="store_true", help="small run (under a minute on 2 CPU cores)")
    ap.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # tiniest run, for the tests
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.smoke:
        length, n_train, steps, n_test, n_steps, n_show = 10, 4096, 400, 64, 32, 3
    elif args.quick:
        length, n_train, steps, n_test, n_steps, n_show = 16, 16384, 1500, 256, 32, 4
    else:
        length, n_train, steps, n_test, n_steps, n_show = 16, 65536, 4000, 1024, 64, 6

    rng = np.random.default_rng(args.seed)
    ids_tr, y_tr = make_data(rng, n_train, length)
    ids_te, y_te = make_data(rng, n_test, length)
    model, params = train(args.seed, jnp.asarray(ids_tr), jnp.asarray(y_tr), steps)
    logit = np.asarray(model.apply(params, jnp.asarray(ids_te)))
    acc = float(np.mean((logit > 0) == (y_te > 0)))
    t_train = time.perf_counter() - t0

    def body(ids):
        return model.apply(params, ids, method=TextClassifier.embed)

    def head(h):
        return model.apply(params, h, method=TextClassifier.head)

    t1 = time.perf_counter()
    attr, info = jaxig.layer_integrated_gradients(body, head, jnp.asarray(ids_te), PAD, n_steps=n_steps,
                                                  return_info=True)
    tok = np.asarray(attr, np.float64).sum(-1)  # (B, L): one number per token
    t_lig = time.perf_counter() - t1
    f_pad = float(head(body(jnp.full((1, length), PAD, jnp.int32)))[0])
    gap = float(np.max(np.abs(tok.sum(1) - (logit - f_pad))) / np.mean(np.abs(logit - f_pad)))

    share, hit, mean_rank, (occ_id, occ_attr, occ_rank) = planted_recovery(tok, ids_te)
    sign_ok = float(np.mean(np.sign(occ_attr) == np.sign(WEIGHT[occ_id])))
    n_planted = (WEIGHT[ids_te] != 0).sum(1)
    metrics = {"test_accuracy": acc, "n_test": n_test, "length": length, "n_steps": n_steps,
               "logit_all_pad": f_pad, "completeness_max_rel_gap": gap, "planted_share": float(share.mean()),
               "topk_hit_rate": float(hit.mean()), "planted_mean_rank": float(mean_rank),
               "mean_planted_per_sentence": float(n_planted.mean()), "planted_sign_agreement": sign_ok,
               "lig_seconds": t_lig, "train_seconds": t_train}
    _write_csv(out / "metrics.csv", ["metric", "value"], list(metrics.items()))
    word_rows = []
    for i, (w, weight) in WORDS.items():
        m = occ_id == i
        word_rows.append([w, weight, int(m.sum()), occ_attr[m].mean(), np.mean(np.sign(occ_attr[m]) == np.sign(weight)),
                          occ_rank[m].mean()])
    _write_csv(out / "words.csv", ["word", "weight", "occurrences", "mean_attribution", "sign_agreement",
                                    "mean_rank"], word_rows)
    show = list(range(n_show))
    _write_csv(out / "tokens.csv", ["sentence", "label", "logit", "position", "token_id", "token", "weight",
                                     "attribution"],
               [(b, int(y_te[b]), logit[b], p, int(ids_te[b, p]), word(ids_te[b, p]), WEIGHT[ids_te[b, p]],
                 tok[b, p]) for b in show for p in range(length)])

    fig, ax = plt.subplots(n_show, 1, figsize=(10, 2.3 * n_show))
    sentiment = {w for w, _ in WORDS.values()}
    for r, b in enumerate(show):
        tokens = [word(i) for i in ids_te[b]]
        jaxig.plot.feature_bars(tok[b], feature_names=tokens, normalize=False, ax=ax[r])
        for lbl in ax[r].get_xticklabels():  # the planted words in bold
            if lbl.get_text() in sentiment:
                lbl.set_fontweight("bold")
        ax[r].set_ylabel("attribution (logit)")
        ax[r].set_title(f"sentence {b}: label {int(y_te[b])}, logit {logit[b]:+.2f} (all-PAD {f_pad:+.2f}); "
                        f"bars sum to {tok[b].sum():+.2f}", fontsize=9)
    fig.suptitle("layer IG at the embedding, summed over the embedding dimension: one number per token")
    fig.tight_layout()
    fig.savefig(out / "tokens.png", dpi=100)
    plt.close(fig)

    runtime = time.perf_counter() - t0
    print(f"embedding + attention pooling classifier on synthetic sentences (L={length}): test accuracy {acc:.3f} "
          f"({steps} Adam steps, {t_train:.1f} s)")
    print(f"layer IG at the embedding (baseline all PAD = zero embedding), n_steps={n_steps}, {n_test} sentences, "
          f"{t_lig:.2f} s; completeness gap {gap:.1e}")
    print(f"  planted words: share of |attr| {share.mean():.3f}, top-k hit rate {hit.mean():.3f}, mean rank "
          f"{mean_rank:.2f} (of {length}; {n_planted.mean():.1f} planted per sentence), sign agreement {sign_ok:.3f}")
    print(f"  {'word':<8}{'weight':>7}{'count':>7}{'mean attr':>11}{'sign ok':>9}{'mean rank':>11}")
    for w, weight, count, mean_a, ok, rk in word_rows:
        print(f"  {w:<8}{weight:>+7.0f}{count:>7}{mean_a:>+11.3f}{ok:>9.3f}{rk:>11.2f}")
    print(f"wrote tokens.png, metrics.csv, words.csv, tokens.csv to {out} in {runtime:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
