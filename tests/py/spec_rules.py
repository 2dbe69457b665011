"""spec_rules.py - an independent numpy implementation of SPEC sections 12-14 (the
strategies of today, the candidate rules, the budget-matched oracle and MagicPIG's
importance estimator), written from the spec and DECISIONS 10 alone, for
test_rules_by_definition.py.  Nothing here calls lshlab: every function takes the
data and the exported hash parameters (`dump: [data, buckets, hash_params]`) and
computes what the spec says, as plainly as numpy allows (explicit sets of pairs as
boolean matrices, brute-force sorts).

Conventions: x is an n x d float64 array; buckets are integer arrays of length n;
"position sort" sorts by (value, position) ascending; ties elsewhere go to the
smaller index."""

import math

import numpy as np


# ---- section 12: the hash rules ------------------------------------------------------

def next_pow2(d):
    p = 1
    while p < d:
        p *= 2
    return p


def hadamard(n):
    """The orthonormal Walsh-Hadamard matrix of order n (a power of two) in
    Sylvester order: H_ij = (-1)^popcount(i AND j) / sqrt(n), entry by entry."""
    i = np.arange(n)
    parity = np.array([[bin(a & b).count("1") & 1 for b in i] for a in i])
    return np.where(parity == 1, -1.0, 1.0) / math.sqrt(n)


def fwht(x):
    """H x along the last axis (Sylvester order, orthonormal), by butterflies:
    O(d log d) a row.  x's last axis is a power of two."""
    y = np.array(x, dtype=float, copy=True)
    n = y.shape[-1]
    h = 1
    while h < n:
        for start in range(0, n, 2 * h):
            a = y[..., start:start + h].copy()
            b = y[..., start + h:start + 2 * h].copy()
            y[..., start:start + h] = a + b
            y[..., start + h:start + 2 * h] = a - b
        h *= 2
    return y / math.sqrt(n)


def crosspolytope_buckets(x, diagonals, k, rotations, n_buckets):
    """SPEC 12.2 crosspolytope: rows zero-padded to d' = next power of two; polytope
    t computes y_t = H D_r ... H D_1 x with D the diagonals rows t*rotations + r
    (polytope-major); a_t = argmax concat(y_t[:m], -y_t[:m]) (first maximum);
    bucket = sum_t a_t (2m)^t, B = (2m)^k."""
    n, d = x.shape
    dp = next_pow2(d)
    diagonals = np.asarray(diagonals, dtype=float)
    if diagonals.shape != (k * rotations, dp):
        raise ValueError(f"diagonals are {diagonals.shape}, expected {(k * rotations, dp)}")
    m = int(round(n_buckets ** (1.0 / k) / 2))
    if (2 * m) ** k != n_buckets or not 1 <= m <= dp:
        raise ValueError(f"n_buckets {n_buckets} is not (2m)^{k} with 1 <= m <= {dp}")
    xp = np.zeros((n, dp))
    xp[:, :d] = x
    out = np.zeros(n, dtype=np.int64)
    for t in range(k):
        y = xp
        for r in range(rotations):
            y = fwht(y * diagonals[t * rotations + r])
        a = np.argmax(np.concatenate([y[:, :m], -y[:, :m]], axis=1), axis=1)
        out += a * (2 * m) ** t
    return out


def gray(p):
    """The p-th word of the reflected Gray sequence: p XOR (p >> 1)."""
    return p ^ (p >> 1)


def gray_rank(code):
    """g^-1(code): the position of code in the reflected Gray sequence (prefix XOR
    of the shifts)."""
    p = 0
    while code:
        p ^= code
        code >>= 1
    return p


def equal_blocks(values, n_buckets):
    """Position-sort the values, cut the sorted order into B blocks (block b holds
    sorted places floor(b n/B) .. floor((b+1) n/B) - 1) and give each row its block."""
    n = len(values)
    if n_buckets > n:
        raise ValueError(f"equal blocks need B <= n, got B = {n_buckets}, n = {n}")
    order = sorted(range(n), key=lambda i: (values[i], i))
    out = np.zeros(n, dtype=np.int64)
    for b in range(n_buckets):
        for place in range(b * n // n_buckets, (b + 1) * n // n_buckets):
            out[order[place]] = b
    return out


def sortlsh_buckets(x, projections, n_buckets):
    """SPEC 12.2 sortlsh: code = sum_t [x.w_t > 0] 2^t, rank = g^-1(code), rows
    position-sorted by rank and cut into equal blocks."""
    bits = (x @ np.asarray(projections, dtype=float)) > 0
    codes = [int(sum(1 << t for t in range(bits.shape[1]) if row[t])) for row in bits]
    return equal_blocks([gray_rank(c) for c in codes], n_buckets)


def smyrf_transform(q, k):
    """SMYRF's asymmetric transform: (q~, k~) with M_q = max |q_i|, M_k = max |k_j|,
    q~ = [q, 0, sqrt(M_q^2 + M_k^2 - |q|^2)], k~ = [k, sqrt(M_q^2 + M_k^2 - |k|^2), 0]."""
    nq = (q * q).sum(axis=1)
    nk = (k * k).sum(axis=1)
    big = nq.max() + nk.max()
    qt = np.hstack([q, np.zeros((len(q), 1)), np.sqrt(np.maximum(big - nq, 0))[:, None]])
    kt = np.hstack([k, np.sqrt(np.maximum(big - nk, 0))[:, None], np.zeros((len(k), 1))])
    return qt, kt


def smyrf_buckets(q, k, projection, n_buckets):
    """SPEC 12.2 smyrf: queries position-sorted by a.q~, keys by a.k~, each cut into
    equal blocks: (query buckets, key buckets)."""
    a = np.asarray(projection, dtype=float).reshape(-1)
    qt, kt = smyrf_transform(q, k)
    return equal_blocks(list(qt @ a), n_buckets), equal_blocks(list(kt @ a), n_buckets)


def balanced_buckets(x, centroids):
    """SPEC 12.2 kmeans balanced: capacity ceil(n/B) per centroid; walk every (row,
    centroid) pair by descending x^.c (ties: smaller row, then smaller centroid),
    giving the row to the centroid when the row has none and the centroid has room."""
    n = len(x)
    c = np.asarray(centroids, dtype=float)
    B = len(c)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    score = xn @ c.T
    cap = -(-n // B)
    pairs = sorted(((-score[i, b], i, b) for i in range(n) for b in range(B)))
    out = np.full(n, -1, dtype=np.int64)
    room = [cap] * B
    for _, i, b in pairs:
        if out[i] < 0 and room[b] > 0:
            out[i] = b
            room[b] -= 1
    return out


def window_buckets(n, n_buckets):
    """SPEC 12.2 window: bucket(i) = floor(i B / n)."""
    return np.array([i * n_buckets // n for i in range(n)], dtype=np.int64)


def chi_square_uniform(buckets, n_buckets):
    counts = np.bincount(buckets, minlength=n_buckets).astype(float)
    e = len(buckets) / n_buckets
    return float(((counts - e) ** 2 / e).sum())


# ---- sections 3, 13: candidate sets ---------------------------------------------------

def allowed_matrix(n, exclude_self, causal):
    """U as an n x n boolean matrix (row i: the keys query i's full attention uses)."""
    i = np.arange(n)
    u = np.ones((n, n), dtype=bool)
    if exclude_self:
        u &= i[:, None] != i[None, :]
    if causal:
        u &= i[None, :] <= i[:, None]
    empty = ~u.any(axis=1)
    u[empty, empty] = True  # U_i = {i} when it would be empty
    return u


def round_matrix(bq, bk, own_keys, mode, chunk_size=0, look_back=1, window="all"):
    """S^h as an n x n boolean matrix (before U): bucket mode, or chunked mode with
    the items sorted by (bucket, position, kind) - 2n items, a query before the key
    of its position, when keys have their own buckets; n items (each both) else."""
    n = len(bq)
    bq, bk = np.asarray(bq), np.asarray(bk)
    same = bq[:, None] == bk[None, :]
    if mode == "bucket":
        return same
    if own_keys:
        items = sorted([(int(bq[p]), p, 0) for p in range(n)] +
                       [(int(bk[p]), p, 1) for p in range(n)])
    else:
        items = sorted((int(bq[p]), p, 0) for p in range(n))
    chunk_q = np.zeros(n, dtype=np.int64)
    chunk_k = np.zeros(n, dtype=np.int64)
    for place, (_, p, kind) in enumerate(items):
        if kind == 0:
            chunk_q[p] = place // chunk_size
        if kind == 1 or not own_keys:
            chunk_k[p] = place // chunk_size
    n_chunks = -(-len(items) // chunk_size)
    span = min(look_back + 1, n_chunks)
    back = (chunk_q[:, None] - chunk_k[None, :]) % n_chunks
    out = back < span
    if window == "same_bucket":
        out &= same
    return out


def candidate_sets(rounds, H, t, sink, local, causal, u):
    """SPEC 13 / DECISIONS 10, 5: (S as a boolean matrix, empty rows, collided)
    where S_i = {j in >= t of the first H rounds} u {j < sink} u {|i - j| < local
    (causal: i - local < j <= i)}, intersected with U_i, then the empty-row
    fallback {i}; collided = the keys that came in through the rounds (not only
    sink/local)."""
    n = u.shape[0]
    count = np.zeros((n, n), dtype=np.int64)
    for h in range(H):
        count += rounds[h]
    collided = count >= t
    i = np.arange(n)
    extra = np.zeros((n, n), dtype=bool)
    extra[:, :sink] = True
    diff = i[:, None] - i[None, :]
    if causal:
        extra |= (diff >= 0) & (diff < local)
    else:
        extra |= np.abs(diff) < local
    s = (collided | extra) & u
    empty = ~s.any(axis=1)
    s[empty, empty] = True
    return s, empty, collided & ~extra


# ---- section 14: importance ----------------------------------------------------------

def simhash_law(cos, k):
    """(1 - theta/pi)^k, theta = arccos(cos): hyperplane (k = log2 B) and rotation with
    factors in {2, 4} (k = sum log2 f), written from the published laws."""
    theta = math.acos(max(-1.0, min(1.0, cos)))
    return (1.0 - theta / math.pi) ** k


def law_bits(strategy, params, n_buckets):
    """k of the law (1 - theta/pi)^k, or None where SPEC 12.2 gives no closed form."""
    p = dict(kv.split("=", 1) for kv in split_top(params)) if params else {}
    if strategy == "hyperplane":
        return int(round(math.log2(n_buckets)))
    if strategy == "rotation" and p.get("orthogonal", "false") == "false":
        listed = p.get("factors", "").strip("[]")
        fs = [int(f) for f in listed.split(",")] if listed else [n_buckets]
        if all(f in (2, 4) for f in fs):
            return sum(1 if f == 2 else 2 for f in fs)
    return None


def split_top(text):
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return out + ([cur] if cur else [])


def binomial_tail(H, p, t):
    """P(Binomial(H, p) >= t), summed term by term."""
    return sum(math.comb(H, j) * p ** j * (1 - p) ** (H - j) for j in range(t, H + 1))


# ---- sections 4, 5, 13, 14: one row's metrics -------------------------------------------

def lse(v):
    m = v.max()
    return m + math.log(np.exp(v - m).sum())


def row_values(i, s_row, a_row, log_a_row, v, sel, logw=None):
    """(O_i, O^_i, A^_i, kl_i) for one row with candidates sel (indices) and optional
    log weights (importance: s - log u); A^ = softmax of s (+ weights) over sel."""
    z = s_row[sel] if logw is None else logw
    la = z - lse(z)
    ahat = np.zeros_like(a_row)
    ahat[sel] = np.exp(la)
    kl = float((np.exp(la) * (la - log_a_row[sel])).sum())
    return a_row @ v, ahat @ v, ahat, kl


def oracle_row(s_row, a_row, v, u_row, m):
    """SPEC 13: O_i = the m keys of U_i with the largest s (ties to the smaller j):
    (their attention mass, |O_i - O^O_i|^2), O^O the softmax over them."""
    allowed = np.nonzero(u_row)[0]
    order = sorted(allowed, key=lambda j: (-s_row[j], j))[:m]
    o = a_row @ v
    z = s_row[order]
    w = np.exp(z - lse(z))
    ohat = w @ v[order]
    return float(a_row[order].sum()), float(((o - ohat) ** 2).sum())


def ratio_se(y, x, m, n):
    """SPEC 7: the ratio estimator sum y / sum x and its standard error."""
    y, x = np.asarray(y, float), np.asarray(x, float)
    if x.sum() == 0:
        return 0.0, 0.0
    r = y.sum() / x.sum()
    if m == n or m < 2:
        return r, 0.0
    ss = ((y - r * x) ** 2).sum()
    xbar = x.sum() / m
    return r, math.sqrt((1 - m / n) * ss / (m * (m - 1))) / abs(xbar)


def reference(q, k, v, keys, scale, exclude_self, causal):
    """The full attention of every row (SPEC 4), shared by every point of a problem:
    s, U, log A, A, O, the Gram matrix and each row's keys by descending s."""
    n = len(q)
    s = scale * (q @ k.T)
    u = allowed_matrix(n, exclude_self, causal)
    log_a = np.full((n, n), -np.inf)
    order = []
    for i in range(n):
        ul = np.nonzero(u[i])[0]
        log_a[i, ul] = s[i, ul] - lse(s[i, ul])
        order.append(ul[np.lexsort((ul, -s[i, ul]))])  # ties: smaller j first
    a = np.where(np.isfinite(log_a), np.exp(log_a), 0.0)
    return {"s": s, "u": u, "log_a": log_a, "a": a, "o": a @ v, "order": order,
            "gram": q @ q.T if keys in ("shared", "shared_normalized") else q @ k.T}


def point_metrics(q, k, v, keys, scale, exclude_self, causal, rounds, H, t, sink, local,
                  combine, rows=None, law_k=None, topk=(), oracle=False, ref=None):
    """Every /runs metric of one point by definition: {column: (value, se)} plus the
    per-row masses and candidate counts.  rounds: the S^h matrices (n x n bool);
    combine union, rounds or importance (law_k: the law's k); ref: reference(...)
    of the same arguments, when the caller keeps it."""
    n = len(q)
    if ref is None:
        ref = reference(q, k, v, keys, scale, exclude_self, causal)
    s, u, gram = ref["s"], ref["u"], ref["gram"]
    S, empty, collided = candidate_sets(rounds, H, t, sink, local, causal, u)
    rows = np.arange(n) if rows is None else np.asarray(rows)
    acc = {}

    def add(metric, y, x):
        acc.setdefault(metric, ([], []))
        acc[metric][0].append(y)
        acc[metric][1].append(x)

    qn = np.linalg.norm(q, axis=1)
    kn = np.linalg.norm(k, axis=1)
    masses, counts = [], []
    for i in rows:
        i = int(i)
        ul = np.nonzero(u[i])[0]
        log_a, a = ref["log_a"][i], ref["a"][i]
        sel = np.nonzero(S[i])[0]
        mass = float(a[sel].sum())
        if empty[i]:
            o = ref["o"][i]
            ahat = np.zeros(n)
            ahat[i] = 1.0
            ohat, kl = v[i], 0.0
        elif combine == "rounds":
            # SPEC 4 (t = 1, s = w = 0 only): per-round softmaxes, LSE weights.
            zs, parts = [], []
            for h in range(H):
                th = np.nonzero(rounds[h][i] & u[i])[0]
                if len(th):
                    zs.append(lse(s[i, th]))
                    parts.append(th)
            zall = lse(np.array(zs))
            ahat = np.zeros(n)
            for z, th in zip(zs, parts):
                ahat[th] += math.exp(z - zall) * np.exp(s[i, th] - z)
            o, ohat = ref["o"][i], ahat @ v
            nz = ahat > 0
            kl = float((ahat[nz] * (np.log(ahat[nz]) - log_a[nz])).sum())
        elif combine == "importance":
            logw = np.empty(len(sel))
            for idx, j in enumerate(sel):
                if not collided[i, j]:
                    uij = 1.0  # sink / local keys
                else:
                    c = 0.0 if qn[i] == 0 or kn[j] == 0 else float(q[i] @ k[j] / (qn[i] * kn[j]))
                    p = simhash_law(c, law_k)
                    uij = binomial_tail(H, p, t)
                    if uij <= 0:
                        raise ValueError(f"pair ({i}, {j}): u = 0")
                logw[idx] = s[i, j] - math.log(uij)
            o, ohat, ahat, kl = row_values(i, s[i], a, log_a, v, sel, logw)
        else:
            o, ohat, ahat, kl = row_values(i, s[i], a, log_a, v, sel)
        add("out", float(((o - ohat) ** 2).sum()), float((o ** 2).sum()))
        add("attn", float(((a - ahat) ** 2).sum()), float((a ** 2).sum()))
        add("mass", mass, 1)
        add("kl", 0.0 if empty[i] else kl, 0 if empty[i] else 1)
        add("empty", 1 if empty[i] else 0, 1)
        off = ul[ul != i]
        add("gram", 0.0 if empty[i] else float((gram[i, sel[sel != i]] ** 2).sum()),
            float((gram[i, off] ** 2).sum()))
        add("density", len(sel), len(ul))
        add("cand", len(sel), 1)
        order = ref["order"][i]
        for K in topk:
            tk = order[:min(K, len(ul))]
            add(f"topk{K}", float(S[i, tk].sum()) / len(tk), 1)
        if oracle:
            om, oe = oracle_row(s[i], a, v, u[i], len(sel))
            add("omass", om, 1)
            add("oout", oe, float((o ** 2).sum()))
        masses.append(mass)
        counts.append(len(sel))
    m = len(rows)
    r = {key: ratio_se(y, x, m, n) for key, (y, x) in acc.items()}

    def root(key):
        val, se = r[key]
        return math.sqrt(val), (se / (2 * math.sqrt(val)) if val else 0.0)

    exp = {"out_rel_err": root("out"), "attn_rel_err": root("attn"), "mass_recall": r["mass"],
           "kl": r["kl"], "empty_rows": (sum(acc["empty"][0]), r["empty"][1] * m),
           "gram_recovery": r["gram"], "density": r["density"],
           "mean_candidates": r["cand"]}
    for K in topk:
        exp[f"topk_recall_{K}"] = r[f"topk{K}"]
    if oracle:
        exp["oracle_mass_recall"] = r["omass"]
        exp["oracle_out_rel_err"] = root("oout")
    return exp, masses, counts


def bucket_balance(bq, H, n_buckets):
    """bucket_max and bucket_entropy over the first H rounds (rows of Q)."""
    n = len(bq[0])
    sizes = [np.bincount(np.asarray(bq[h]), minlength=n_buckets) for h in range(H)]
    bmax = max(sz.max() for sz in sizes) * n_buckets / n
    ent = [-(p[p > 0] * np.log(p[p > 0])).sum() / math.log(n_buckets)
           for p in (sz / n for sz in sizes)]
    return bmax, sum(ent) / H
