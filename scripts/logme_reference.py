#!/usr/bin/env python3
"""Reference LogME numbers for dnalm-eval's test (crates/dnalm-eval/src/relevance/transfer.rs).

This is the published algorithm of You et al., "LogME: Practical Assessment of Pre-trained Models
for Transfer Learning" (ICML 2021), as in the authors' reference code (github.com/thuml/LogME,
LogME.py: `truncated_svd` and `LogME._fit_fixed_point`), transcribed with numpy only. It prints the
evidence on the fixed matrix the Rust test builds:
    x[i][j] = sin(i * (j + 1) * 0.37) + 0.1 * j   (60 x 8), labels i % 3, target cos(0.05 i).

Run: .venv-torch/bin/python scripts/logme_reference.py   (numpy comes with scripts/setup-torch.sh)
"""
import numpy as np


def truncated_svd(x):
    u, s, vh = np.linalg.svd(x.transpose() @ x)
    s = np.sqrt(s)
    u_times_sigma = x @ vh.transpose()
    k = np.sum((s > 1e-10) * 1)  # rank of f
    s = s.reshape(-1, 1)
    s = s[:k]
    vh = vh[:k]
    u = u_times_sigma[:, :k] / s.reshape(1, -1)
    return u, s, vh


def logme_fixed_point(f, y, regression):
    f = f.astype(np.float64)
    N, D = f.shape
    if N > D:
        u, s, vh = truncated_svd(f)
    else:
        u, s, vh = np.linalg.svd(f, full_matrices=False)
    s = s.reshape(-1, 1)
    sigma = s ** 2
    evidences = []
    num_dim = y.shape[1] if regression else int(y.max() + 1)
    for i in range(num_dim):
        y_ = y[:, i] if regression else (y == i).astype(np.float64)
        y_ = y_.reshape(-1, 1)
        x = u.T @ y_
        x2 = x ** 2
        res_x2 = (y_ ** 2).sum() - x2.sum()
        alpha, beta = 1.0, 1.0
        for _ in range(11):
            t = alpha / beta
            gamma = (sigma / (sigma + t)).sum()
            m2 = (sigma * x2 / ((t + sigma) ** 2)).sum()
            res2 = (x2 / ((1 + sigma / t) ** 2)).sum() + res_x2
            alpha = gamma / (m2 + 1e-5)
            beta = (N - gamma) / (res2 + 1e-5)
            t_ = alpha / beta
            if abs(t_ - t) / t <= 1e-3:
                break
        evidence = D / 2.0 * np.log(alpha) \
            + N / 2.0 * np.log(beta) \
            - 0.5 * np.sum(np.log(alpha + beta * sigma)) \
            - beta / 2.0 * res2 \
            - alpha / 2.0 * m2 \
            - N / 2.0 * np.log(2 * np.pi)
        evidences.append(evidence / N)
    return float(np.mean(evidences))


def main():
    n, d = 60, 8
    i = np.arange(n).reshape(-1, 1)
    j = np.arange(d).reshape(1, -1)
    x = (np.sin(i * (j + 1) * 0.37) + 0.1 * j).astype(np.float32)
    labels = np.arange(n) % 3
    target = np.cos(0.05 * np.arange(n)).reshape(-1, 1)
    print(f"classification {logme_fixed_point(x, labels, False):.12f}")
    print(f"regression {logme_fixed_point(x, target, True):.12f}")


if __name__ == "__main__":
    main()
