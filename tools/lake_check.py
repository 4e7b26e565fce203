#!/usr/bin/env python3
"""Reads a Mezzanine Parquet lake with engines other than the recorder's:
Python's duckdb, pyarrow, and (when installed, with a Java runtime) Spark.

    python3 tools/lake_check.py LAKE_DIR [--expect-samples N] [--spark]

Each engine counts the rows of every dataset it finds (samples, spectra,
transitions, mes_events, …) through its own Hive-partition discovery
(site=/date=/hour=) and prints a table; the counts must agree between
engines (and with --expect-samples, equal N). Exit status 1 when they do
not, 2 when an engine asked for is missing.
"""

import argparse
import pathlib
import sys

TIME_DATASETS = [
    "samples", "spectra", "transitions", "mes_events", "work_orders",
    "discrepancies", "dead_letters", "part_events",
]


def files_of(lake, name):
    root = lake / name
    if not root.is_dir():
        return []
    return sorted(
        p for p in root.rglob("*.parquet")
        if not any(part.startswith(("_", ".")) for part in p.relative_to(lake).parts)
    )


def count_duckdb(lake, name):
    import duckdb
    glob = str(lake / name / "**" / "*.parquet")
    con = duckdb.connect()
    n, sites, first, last = con.execute(
        f"SELECT count(*), count(DISTINCT site), min(ts), max(ts) "
        f"FROM read_parquet('{glob}', hive_partitioning = true, union_by_name = true)"
    ).fetchone()
    return n, sites, first, last


def count_pyarrow(lake, name):
    import pyarrow.dataset as ds
    dataset = ds.dataset(
        str(lake / name), format="parquet", partitioning="hive",
        ignore_prefixes=["_", "."],
    )
    table = dataset.to_table(columns=["ts_us", "site", "hour"])
    hours = set(table.column("hour").to_pylist())
    assert all(0 <= h <= 23 for h in hours), f"{name}: hour partitions {hours}"
    return table.num_rows


def count_spark(lake, names):
    from pyspark.sql import SparkSession
    spark = (
        SparkSession.builder.master("local[1]").appName("mezzanine-lake-check")
        .config("spark.ui.enabled", "false").getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    out = {}
    for name in names:
        df = spark.read.option("recursiveFileLookup", "false").parquet(str(lake / name))
        out[name] = df.count()
        if name == "samples":
            cols = set(df.columns)
            assert {"site", "date", "hour", "ts", "asset_id", "value"} <= cols, cols
    spark.stop()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("lake", type=pathlib.Path)
    ap.add_argument("--expect-samples", type=int)
    ap.add_argument("--spark", action="store_true", help="also read it with Spark (pyspark)")
    args = ap.parse_args()
    lake = args.lake
    names = [n for n in TIME_DATASETS if files_of(lake, n)]
    if not names:
        print(f"{lake}: no datasets", file=sys.stderr)
        return 1
    try:
        import duckdb  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError as e:
        print(f"missing: {e.name} (pip install duckdb pyarrow)", file=sys.stderr)
        return 2
    spark = {}
    if args.spark:
        try:
            spark = count_spark(lake, names)
        except ImportError:
            print("missing: pyspark (pip install pyspark; needs Java)", file=sys.stderr)
            return 2
    ok = True
    print(f"{'dataset':<14} {'files':>6} {'duckdb':>10} {'pyarrow':>10} {'spark':>10}  sites  first … last (UTC)")
    for name in names:
        n_duck, sites, first, last = count_duckdb(lake, name)
        n_arrow = count_pyarrow(lake, name)
        n_spark = spark.get(name)
        agree = n_duck == n_arrow and (n_spark is None or n_spark == n_duck)
        ok &= agree
        print(
            f"{name:<14} {len(files_of(lake, name)):>6} {n_duck:>10} {n_arrow:>10} "
            f"{'' if n_spark is None else n_spark:>10}  {sites:>5}  {first} … {last}"
            + ("" if agree else "   ENGINES DISAGREE")
        )
        if name == "samples" and args.expect_samples is not None and n_duck != args.expect_samples:
            print(f"samples: {n_duck} rows, expected {args.expect_samples}")
            ok = False
    print("all engines agree" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
