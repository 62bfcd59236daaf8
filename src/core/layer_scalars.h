/* The scalars of a layer result (mq_layer_result, mpiquant.h) in one table, iterated by every
 * place that lists them: the result file's attributes (written and read), the check that all
 * ranks write the same layer, the JSON report, the broadcast of a layer group's result, and
 * `inspect`. Adding a scalar here adds it everywhere.
 *
 * X(field, kind, nan_ok, negative_ok): `field` is the struct member and the attribute/JSON
 * name; kind F64 (double, float64 attribute, null in JSON when not finite) or I64 (integer
 * member, int64 attribute). The last two columns are the values a result may hold, checked
 * before a layer is written (io/h5result.c): nan_ok(r) says whether NaN is valid for result r
 * (MQ_NAN_NEVER, MQ_NAN_ALWAYS: not measured here, MQ_NAN_IF_NO_FLOOR: Qronos' bound includes
 * err_floor, unknown for layers given as H and G); negative_ok is MQ_NONNEG or MQ_SIGNED.
 * Infinities are never valid. Users that need fewer columns take them as `...`. */
#ifndef MQ_CORE_LAYER_SCALARS_H
#define MQ_CORE_LAYER_SCALARS_H

#define MQ_LAYER_SCALARS(X)                                 \
  X(lambda, F64, MQ_NAN_NEVER, MQ_NONNEG)                   \
  X(loss, F64, MQ_NAN_NEVER, MQ_NONNEG)                     \
  X(err, F64, MQ_NAN_NEVER, MQ_NONNEG)                      \
  X(rel_err, F64, MQ_NAN_NEVER, MQ_NONNEG)                  \
  X(bound_l2, F64, MQ_NAN_IF_NO_FLOOR, MQ_NONNEG)           \
  X(bound_linf, F64, MQ_NAN_ALWAYS, MQ_NONNEG)              \
  X(err_floor, F64, MQ_NAN_ALWAYS, MQ_SIGNED)               \
  X(seconds, F64, MQ_NAN_NEVER, MQ_NONNEG)                  \
  X(clipped, I64, MQ_NAN_NEVER, MQ_NONNEG)                  \
  X(lambda_raises, I64, MQ_NAN_NEVER, MQ_NONNEG)            \
  X(samples, I64, MQ_NAN_NEVER, MQ_NONNEG)                  \
  X(routed, I64, MQ_NAN_NEVER, MQ_NONNEG)

/* The policy columns (r: const mq_layer_result *; MQ_NAN_IF_NO_FLOOR needs <math.h>). */
#define MQ_NAN_NEVER(r) 0
#define MQ_NAN_ALWAYS(r) 1
#define MQ_NAN_IF_NO_FLOOR(r) isnan((r)->err_floor)
#define MQ_NONNEG 0
#define MQ_SIGNED 1

/* How many there are (for arrays that carry them as doubles: exact for these values). */
#define MQ__LAYER_SCALAR_ONE(field, ...) +1
enum { MQ_LAYER_SCALAR_COUNT = 0 MQ_LAYER_SCALARS(MQ__LAYER_SCALAR_ONE) };

#endif
