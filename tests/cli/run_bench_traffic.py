#!/usr/bin/python3
"""The measured MPI traffic per rank and phase (src/parallel/traffic.h, counted by the PMPI
wrappers of src/cli/mpi_traffic.c), as `bench --verbose` and `quantize --json` report it.

  run_bench_traffic.py --mpiquant PATH --workdir DIR --demo-model DIR --demo-calib FILE
                       [--mpirun "mpirun --oversubscribe"] [--timeout 120]

bench --method optq --cols 512 --rows 256 --tokens 2048 --factor scalapack at 1, 2, 3, 4 ranks,
and --cols 1536 --rows 64 --tokens 1024 at 2 ranks (each rank's slice of the sums then needs
two 8 MiB messages per step):
  a. the sums phase (max over ranks) equals, in bytes and messages, the exact-sum reduction of
     src/parallel/exact_sum.c (mq_exact_sum_reduce_to_double) of the packed triangle, tri =
     c(c+1)/2 accumulators: rank r's slice n_r (mq_partition) is kept, the others' slices are
     sent in the P-1 steps of the pairwise exchange, 16 bytes each, in ceil(max n_q / 2^19)
     MPI_Sendrecv per step; then its n_r doubles go into the MPI_Allgatherv (one message); plus
     four small collectives of the layer engine and the sums (the cache probe, 4 bytes; the
     samples' bound, 24; two status agreements, 4 each). So rank r sends
     16(tri - n_r) + 8 n_r + 36 bytes in (P-1)·ceil(max n_q / 2^19) + 5 messages;
  b. ScaLAPACK's traffic is seen (calls from inside libscalapack reach the wrappers): at 2 or
     more ranks the factor phase sends more than mpiquant's own calls in it could (the
     diagonal, 8c bytes, and a few status words); at 1 rank every phase is 0 (nothing leaves
     it);
  c. what mpiquant hands to MPI is all measured, the exact sums aside: the context counts
     24·tri per rank for the exact sums' reduction (the whole accumulator and the whole
     result, of which a rank sends only its share: more than what it sends), so
     handed - 24·tri·P <= measured (all ranks) - the sums of all ranks from (a).
quantize --json on the demo model (13 windows of 128 tokens): every layer has
"traffic_per_rank" with all six phases; at 2 ranks the first layer's sums are > 0, at 1 rank
every phase of every layer is 0.
Final line: `N passed, M failed`."""
import json
import math
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import drivers  # noqa: E402

PHASES = ("sums", "factor", "refit", "sweep", "gather", "other")
EXCHANGE_VALUES = 1 << 19  # exact_sum.c: accumulators per message of the exchange (8 MiB)
SMALL_BYTES, SMALL_MESSAGES = 4 + 24 + 4 + 4, 4  # the small collectives around the sums


def partition(n, parts, q):
    base, extra = divmod(n, parts)
    return base + (1 if q < extra else 0)


def sums_of_rank(cols, P, r):
    """(bytes, messages) rank r sends in the sums phase (docstring, a)."""
    tri = cols * (cols + 1) // 2
    if P == 1:
        return 0, 0
    counts = [partition(tri, P, q) for q in range(P)]
    pieces = math.ceil(max(counts) / EXCHANGE_VALUES)
    return (16 * (tri - counts[r]) + 8 * counts[r] + SMALL_BYTES,
            (P - 1) * pieces + 1 + SMALL_MESSAGES)


def parse_bench(log):
    """phase -> (bytes, messages), all ranks' bytes, handed bytes; None when absent."""
    m = re.search(r"MPI traffic per rank in bytes/messages \(max over ranks\):(.*?); all ranks "
                  r"(\d+) bytes; handed to MPI (\d+) bytes", log)
    if m is None:
        return None
    phases = {k: (int(b), int(n)) for k, b, n in re.findall(r" (\w+) (\d+)/(\d+)", m.group(1))}
    return phases, int(m.group(2)), int(m.group(3))


def check_bench(s, P, cols, rows, tokens, factor):
    ok, cmd, _, _ = s.run(["bench", "--verbose", "--method", "optq", "--cols", str(cols),
                           "--rows", str(rows), "--tokens", str(tokens), "--factor", factor],
                          np_=P)
    label = "bench %dx%d, %d tokens, %s, %d rank(s)" % (rows, cols, tokens, factor, P)
    log = getattr(s, "last_log", "")
    parsed = parse_bench(log) if ok else None
    if not s.case(parsed is not None and set(parsed[0]) == set(PHASES), label + ": report",
                  "" if parsed else "no per-phase bytes/messages line" if ok else "run failed",
                  [cmd]):
        return
    phases, measured_all, handed = parsed
    tri = cols * (cols + 1) // 2
    per_rank = [sums_of_rank(cols, P, r) for r in range(P)]
    want = (max(b for b, _ in per_rank), max(n for _, n in per_rank))
    s.case(phases["sums"] == want, label + ": (a) sums == exact-sum formula",
           "measured %s, formula %s" % (phases["sums"], want), [cmd])
    if P == 1:
        s.case(all(v == (0, 0) for v in phases.values()), label + ": (b) every phase 0",
               str(phases), [cmd])
        return
    if factor == "scalapack":  # mpiquant's own calls there: the diagonal (8c) and status words
        s.case(phases["factor"][0] > 8 * cols + 1024,
               label + ": (b) ScaLAPACK's factor traffic measured",
               "factor %s, mpiquant's own calls there < %d bytes" % (phases["factor"],
                                                                     8 * cols + 1024), [cmd])
    sums_all = sum(b for b, _ in per_rank)
    s.case(handed - 24 * tri * P <= measured_all - sums_all,
           label + ": (c) handed to MPI, exact sums aside, <= measured",
           "handed %d - exact sums %d vs measured %d - sums %d" % (handed, 24 * tri * P, measured_all,
                                                       sums_all), [cmd])


def check_quantize(s, a, P):
    out, js = s.path("q%d.h5" % P), s.path("q%d.json" % P)
    if os.path.exists(js):
        os.remove(js)
    ok, cmd, tail, _ = s.run(["quantize", "--model", a.demo_model, "--calib", a.demo_calib,
                              "--out", out, "--json", js, "--nsamples", "13", "--seqlen", "128",
                              "--quiet"], np_=P, out=out)
    label = "quantize --json, %d rank(s)" % P
    if not s.case(ok and os.path.exists(js), label + ": runs", tail, [cmd]):
        return
    layers = json.load(open(js))["layers"]
    t = [layer.get("traffic_per_rank") for layer in layers]
    shaped = all(isinstance(x, dict) and set(x) == set(PHASES) and
                 all(set(v) == {"bytes", "messages"} for v in x.values()) for x in t)
    if not s.case(shaped and len(t) > 0, label + ": traffic_per_rank in every layer",
                  str(t[:1]), [cmd]):
        return
    if P == 1:
        s.case(all(v["bytes"] == 0 and v["messages"] == 0 for x in t for v in x.values()),
               label + ": every phase 0", str(t[0]), [cmd])
    else:
        s.case(t[0]["sums"]["bytes"] > 0 and t[0]["sums"]["messages"] > 0,
               label + ": first layer's sums > 0", str(t[0]["sums"]), [cmd])


def main():
    ap = drivers.base_parser(__doc__)
    ap.add_argument("--demo-model", required=True)
    ap.add_argument("--demo-calib", required=True)
    a = ap.parse_args()
    s = drivers.Suite(a, "bench_traffic")
    if not s.exists():
        return s.finish()
    for P in (1, 2, 3, 4):
        check_bench(s, P, 512, 256, 2048, "scalapack")
    check_bench(s, 2, 1536, 64, 1024, "local")
    for P in (1, 2):
        check_quantize(s, a, P)
    return s.finish()


if __name__ == "__main__":
    sys.exit(main())
