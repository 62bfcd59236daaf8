/* The scalars of a layer result (mq_layer_result, mpiquant.h) in one table, iterated by every
 * place that lists them: the result file's attributes (written and read), the check that all
 * ranks write the same layer, the JSON report, the broadcast of a layer group's result, and
 * `inspect`. Adding a scalar here adds it everywhere.
 *
 * X(field, kind): `field` is the struct member and the attribute/JSON name; kind F64 (double,
 * float64 attribute, null in JSON when not finite) or I64 (integer member, int64 attribute). */
#ifndef MQ_CORE_LAYER_SCALARS_H
#define MQ_CORE_LAYER_SCALARS_H

#define MQ_LAYER_SCALARS(X) \
  X(lambda, F64)            \
  X(loss, F64)              \
  X(err, F64)               \
  X(rel_err, F64)           \
  X(bound_l2, F64)          \
  X(bound_linf, F64)        \
  X(err_floor, F64)         \
  X(seconds, F64)           \
  X(clipped, I64)           \
  X(lambda_raises, I64)

/* How many there are (for arrays that carry them as doubles: exact for these values). */
#define MQ__LAYER_SCALAR_ONE(field, kind) +1
enum { MQ_LAYER_SCALAR_COUNT = 0 MQ_LAYER_SCALARS(MQ__LAYER_SCALAR_ONE) };

#endif
