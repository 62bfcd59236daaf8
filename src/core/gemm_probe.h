/* The machine's GEMM rate, measured on the spot: what benchmarks set their phases against. */
#ifndef MQ_CORE_GEMM_PROBE_H
#define MQ_CORE_GEMM_PROBE_H

/* Best of three square GEMMs of order n on this rank (SGEMM with single, else DGEMM), in
 * GFLOP/s; 0 when the buffers cannot be allocated. */
double mq_gemm_rate(int n, int single);

#endif
