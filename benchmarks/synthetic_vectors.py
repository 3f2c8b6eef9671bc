"""Do generated vectors behave like real ones under approximate search? (``ff-index synthesize --vectors``)

For each generated collection: its first ``--docs`` vectors, and its first ``--queries`` queries
encoded by the real encoder. Exact top-k (FAISS ``IndexFlatIP``) against HNSW
(``IndexHNSWFlat(dim, M, inner product)``, efConstruction 64): recall@k of HNSW, and exact dense
retrieval's nDCG@10 / R@100 on the collection's synthetic judgements. The same for random
Gaussian unit vectors of the same shape (queries random too), and, for reference, the source's
real document vectors with its real test queries (from the collection's ``vector_map.npz``).

    python benchmarks/synthetic_vectors.py --collection work/synth-50k [--collection ...] [--out docs/x.md]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def ann_recall(docs: np.ndarray, queries: np.ndarray, k: int, m: int, ef_search: int) -> dict[str, float]:
    """HNSW recall@k against exact search, and both searches' time per query."""
    import faiss

    docs = np.ascontiguousarray(docs, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    flat = faiss.IndexFlatIP(docs.shape[1])
    flat.add(docs)
    start = time.perf_counter()
    _, exact = flat.search(queries, k)
    flat_ms = 1000 * (time.perf_counter() - start) / len(queries)
    hnsw = faiss.IndexHNSWFlat(docs.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 64
    start = time.perf_counter()
    hnsw.add(docs)
    build_s = time.perf_counter() - start
    hnsw.hnsw.efSearch = ef_search
    start = time.perf_counter()
    _, approx = hnsw.search(queries, k)
    hnsw_ms = 1000 * (time.perf_counter() - start) / len(queries)
    recall = np.mean([len(set(a) & set(e)) / k for a, e in zip(approx.tolist(), exact.tolist())])
    return {"recall": float(recall), "flat_ms": flat_ms, "hnsw_ms": hnsw_ms, "build_s": build_s}


def dense_effectiveness(qids: list[str], queries: np.ndarray, docs: np.ndarray, docnos: list[str],
                        qrels) -> dict[str, float]:
    """nDCG@10 and R@100 of exact dense retrieval."""
    from indexing.synthetic_vectors import _dense_run
    from ranker.evaluation import evaluate

    return evaluate(_dense_run(qids, queries, docs, docnos), qrels, ["nDCG@10", "R@100"])


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--collection", action="append", required=True, help="ff-index synthesize --vectors output")
    parser.add_argument("--docs", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--m", type=int, default=32)
    parser.add_argument("--ef-search", type=int, default=256)
    parser.add_argument("--out", help="also write the table (markdown) here")
    args = parser.parse_args()

    from indexing.encoding import encode_texts
    from ranker.encoders import load_encoder, resolve_encoder
    from ranker.topics import load_qrels, read_queries

    model = load_encoder(resolve_encoder(None))
    rows = []
    for collection in map(Path, args.collection):
        record = json.loads((collection / "synthetic.json").read_text())
        docs = np.load(collection / "vectors.npy", mmap_mode="r")[:args.docs]
        docnos = (collection / "vector_ids.txt").read_text().split()[:len(docs)]
        queries = read_queries(collection).iloc[:args.queries]
        qvecs = encode_texts(model, list(queries["query"]), progress=False)
        qrels = load_qrels(collection, "test")
        qrels = qrels[qrels["qid"].isin(set(queries["qid"])) & qrels["docno"].isin(set(docnos))]
        noise = record["vectors"]["noise"]
        rows.append((f"generated, noise {noise:g} ({collection.name})", len(docs), len(queries),
                     ann_recall(docs, qvecs, args.k, args.m, args.ef_search),
                     dense_effectiveness(list(queries["qid"]), qvecs, np.asarray(docs), docnos, qrels)))
    first = Path(args.collection[0])
    record = json.loads((first / "synthetic.json").read_text())
    n = rows[0][1]
    rng = np.random.default_rng(0)
    rows.append(("random Gaussian, normalised", n, args.queries,
                 ann_recall(unit(rng.standard_normal((n, 384))), unit(rng.standard_normal((args.queries, 384))),
                            args.k, args.m, args.ef_search), None))
    with np.load(first / "vector_map.npz") as data:
        real = data["real_vectors"]
    source = Path(record["source"]["path"])
    if (source / "qrels" / "test.tsv").is_file():
        from indexing.synthetic import read_statistics

        real_queries = read_queries(source, "test")
        qvecs = encode_texts(model, list(real_queries["query"]), progress=False)
        docnos = read_statistics(source).docnos
        rows.append((f"real {source.name} document vectors, real test queries", len(real), len(real_queries),
                     ann_recall(real, qvecs, args.k, args.m, args.ef_search),
                     dense_effectiveness(list(real_queries["qid"]), qvecs, real, docnos, load_qrels(source, "test"))))

    lines = [(f"HNSW M={args.m}, efConstruction 64, efSearch {args.ef_search}, recall@{args.k} against exact "
              "IndexFlatIP; queries encoded by the real encoder (random rows: random queries)."), "",
             ("| vectors | docs | queries | recall@k | HNSW build s | flat ms/q | HNSW ms/q | exact nDCG@10 "
              "| exact R@100 |"),
             "|---|---|---|---|---|---|---|---|---|"]
    for name, docs_n, queries_n, ann, eff in rows:
        effect = (f"{eff['nDCG@10']:.4f} | {eff['R@100']:.4f}" if eff else "- | -")
        lines.append(f"| {name} | {docs_n:,} | {queries_n} | {ann['recall']:.3f} | {ann['build_s']:.1f} | "
                     f"{ann['flat_ms']:.2f} | {ann['hnsw_ms']:.2f} | {effect} |")
    realism = record["vectors"]["realism"]
    calibration = record["vectors"]["calibration"]
    lines += ["", (f"Map fit ({realism['documents']:,} real documents, {realism['folds']}-fold cross-validated): "
                   f"held-out cosine(predicted, real) {realism['held_out_cosine']}; mean cosine of random document "
                   f"pairs {realism['mean_pairwise_cosine']['real']} (real) vs "
                   f"{realism['mean_pairwise_cosine']['predicted']} (predicted). Generated documents: "
                   f"{calibration['mean_pairwise_cosine_before']} before the stretch "
                   f"(x{calibration['stretch']}), {calibration['mean_pairwise_cosine_after']} after.")]
    if "ndcg@10_real" in realism:
        lines.append(f"Real test queries, exact dense nDCG@10 over the real documents: real vectors "
                     f"{realism['ndcg@10_real']}, predicted {realism['ndcg@10_predicted']}, predicted + residual "
                     f"noise x1 {realism['ndcg@10_predicted_noise_1']}.")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        Path(args.out).write_text(table)


if __name__ == "__main__":
    main()
