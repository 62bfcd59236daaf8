/* The machine's GEMM rate, measured on the spot: what benchmarks set their phases against. */
#ifndef MQ_CORE_GEMM_PROBE_H
#define MQ_CORE_GEMM_PROBE_H

/* Best of three square GEMMs of order n on this rank (SGEMM with single, else DGEMM), in
 * GFLOP/s; 0 when the buffers cannot be allocated. */
double mq_gemm_rate(int n, int single);

/* Best of three SYRKs C = AᵀA of order n over k samples, the Hessian sums' shape (row-major A
 * [k, n], upper triangle), in GFLOP/s counting n²·k flops (what a Gram costs, as the Hessian
 * phase counts it). */
double mq_syrk_rate(int n, int k, int single);

#endif
