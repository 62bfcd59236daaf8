/* Structure-aware HDF5 inputs: the fuzz input is read as a recipe that builds a *valid* HDF5
 * file through the HDF5 API, whose contents are hostile: attributes and datasets present or
 * missing, of the expected class or another (integer, float, fixed or variable-length string),
 * scalar, 1-D, 2-D or 3-D, with shapes off by one or zero, values from a table of edge cases
 * (0, -1, 2^31, NaN, Inf, 3.4e38, ...) or raw input bytes. The file is then opened by the
 * reader under test, as mpiquant opens it.
 *
 * Why not mutate the file's bytes: libhdf5 1.10.8 (Debian 12) crashes on corrupted files in its
 * own parser within seconds of fuzzing (e.g. a memcpy overlap in H5HG_read under H5Aread of a
 * variable-length string); such crashes are upstream's, and no reader of ours can avoid them.
 * Set MQ_FUZZ_RAW=1 to fuzz the raw bytes anyway (the input is then the file itself). */
#ifndef MQ_FUZZ_H5BUILD_H
#define MQ_FUZZ_H5BUILD_H

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "hdf5.h"

/* The input, consumed front to back; zeros once it runs out. */
typedef struct fdp {
  const uint8_t *p;
  size_t n;
} fdp;

static inline uint8_t fdp_u8(fdp *f) {
  if (f->n == 0) return 0;
  f->n--;
  return *f->p++;
}

static inline uint64_t fdp_bytes(fdp *f, int k) {
  uint64_t v = 0;
  for (int i = 0; i < k; i++) v |= (uint64_t)fdp_u8(f) << (8 * i);
  return v;
}

/* lo .. hi, biased to small values. */
static inline size_t fdp_range(fdp *f, size_t lo, size_t hi) {
  return hi <= lo ? lo : lo + (size_t)(fdp_bytes(f, 2) % (hi - lo + 1));
}

static const double fuzz_doubles[] = {0.0,  1.0,     -1.0,    0.5,     2.0,      3.0,   4.0,
                                      8.0,  255.0,   65504.0, 70000.0, 3.4e38,   -3.4e38,
                                      1e300, 1e-45,  DBL_MIN, NAN,     INFINITY, -INFINITY};
static const int64_t fuzz_ints[] = {0,   1,   -1,  2,          3,          4,
                                    8,   16,  32,  128,        255,        256,
                                    -2,  7,   9,   2147483647, -2147483647 - 1,
                                    INT64_MAX, INT64_MIN, (int64_t)1 << 40};
static const char *const fuzz_strings[] = {"",       "mpiquant", "optq",     "rtn",
                                           "qronos", "nearest",  "stochastic", "damp",
                                           "absolute", "auto",   "F32",      "F16",
                                           "BF16",   "0.1.0",    "0123456789abcdef",
                                           "xyz",    "{\"architectures\": [\"LlamaForCausalLM\"]}"};

static inline double fdp_double(fdp *f) {
  uint8_t s = fdp_u8(f);
  if (s < 2 * (sizeof fuzz_doubles / sizeof *fuzz_doubles))
    return fuzz_doubles[s % (sizeof fuzz_doubles / sizeof *fuzz_doubles)];
  uint64_t b = fdp_bytes(f, 8);
  double d;
  memcpy(&d, &b, sizeof d);
  return d;
}

static inline int64_t fdp_int(fdp *f) {
  uint8_t s = fdp_u8(f);
  if (s < 2 * (sizeof fuzz_ints / sizeof *fuzz_ints))
    return fuzz_ints[s % (sizeof fuzz_ints / sizeof *fuzz_ints)];
  return (int64_t)fdp_bytes(f, 8);
}

/* A string: one of the table, or up to 40 input bytes. Into buf[64]. */
static inline const char *fdp_string(fdp *f, char buf[64]) {
  uint8_t s = fdp_u8(f);
  size_t nt = sizeof fuzz_strings / sizeof *fuzz_strings;
  if (s < 3 * nt) return fuzz_strings[s % nt];
  size_t len = fdp_range(f, 0, 40);
  for (size_t i = 0; i < len; i++) buf[i] = (char)(fdp_u8(f) | 1); /* no NUL inside */
  buf[len] = '\0';
  return buf;
}

/* ---- writing ---- */

static inline void fz_close(hid_t *id) {
  if (*id >= 0) (void)H5Idec_ref(*id);
  *id = H5I_INVALID_HID;
}

/* A string type: fixed length (len) or variable length. */
static inline hid_t fz_str_type(int variable, size_t len) {
  hid_t t = H5Tcopy(H5T_C_S1);
  (void)H5Tset_size(t, variable ? H5T_VARIABLE : (len > 0 ? len : 1));
  return t;
}

/* Writes attribute `name` on loc: with probability ~5/8 the intended value (kind 'i' int64,
 * 'u' uint64, 'd' double, 's' variable-length string: iv, dv or sv), else missing or a hostile
 * one (another class, an array, a 2-D or empty dataspace, a fixed-length string). */
static inline void fz_attr(fdp *f, hid_t loc, const char *name, char kind, int64_t iv,
                           double dv, const char *sv) {
  uint8_t sel = fdp_u8(f);
  hsize_t dims[2] = {1, 1};
  hid_t space = H5I_INVALID_HID, type = H5I_INVALID_HID, a = H5I_INVALID_HID;
  char buf[64];
  if (sel >= 160 && sel < 176) return; /* missing */
  if (sel >= 176) kind = "idsSaAe"[(sel - 176) % 7]; /* another kind */
  else if (sel >= 100 && kind != 's') { iv = fdp_int(f); dv = fdp_double(f); } /* odd value */
  if (kind == 'a' || kind == 'A') { /* 1-D of 1..3, or 2-D */
    dims[0] = fdp_range(f, 0, 3);
    space = kind == 'a' ? H5Screate_simple(1, dims, NULL) : H5Screate_simple(2, dims, NULL);
    kind = 'i';
  } else if (kind == 'e') {
    space = H5Screate(H5S_NULL);
    kind = 'i';
  } else {
    space = H5Screate(H5S_SCALAR);
  }
  if (kind == 'S') sv = fdp_string(f, buf);
  if (kind == 's' && sel >= 176) sv = fdp_string(f, buf);
  switch (kind) {
    case 'i': type = H5Tcopy(H5T_STD_I64LE); break;
    case 'u': type = H5Tcopy(H5T_STD_U64LE); break;
    case 'd': type = H5Tcopy(H5T_IEEE_F64LE); break;
    default: type = fz_str_type(kind == 's', sv ? strlen(sv) : 1); break;
  }
  if (space < 0 || type < 0) goto done;
  a = H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  if (a < 0) goto done;
  int64_t ibuf[6] = {iv, iv, iv, iv, iv, iv};
  double dbuf[1] = {dv};
  if (kind == 'i' || kind == 'u') (void)H5Awrite(a, type, ibuf);
  else if (kind == 'd') (void)H5Awrite(a, type, dbuf);
  else if (kind == 's') (void)H5Awrite(a, type, &sv);
  else (void)H5Awrite(a, type, sv ? sv : "");
done:
  fz_close(&a);
  fz_close(&type);
  fz_close(&space);
}

/* Element generators for fz_dataset: value k of the intended data. */
typedef double (*fz_value_fn)(fdp *f, size_t k, void *ctx);

/* Dataset `name` of loc: with probability ~3/4 of file type ftype (an HDF5 predefined type)
 * and shape dims[ndim] holding value(k) (or, one element in 16, a hostile value); else missing,
 * or of another class, rank or shape (off by one, zero), or a string. At most 4096 elements are
 * written. */
static inline void fz_dataset(fdp *f, hid_t loc, const char *name, hid_t ftype, int ndim,
                              const hsize_t *want, fz_value_fn value, void *ctx) {
  uint8_t sel = fdp_u8(f);
  hsize_t dims[3] = {want[0], ndim > 1 ? want[1] : 1, 1};
  hid_t space = H5I_INVALID_HID, ds = H5I_INVALID_HID, type = H5Tcopy(ftype);
  double *vals = NULL;
  if (sel >= 192 && sel < 208) goto done; /* missing */
  if (sel >= 208) {
    switch ((sel - 208) % 8) {
      case 0: fz_close(&type); type = H5Tcopy(H5T_STD_I32LE); break;
      case 1: fz_close(&type); type = H5Tcopy(H5T_IEEE_F64LE); break;
      case 2: fz_close(&type); type = H5Tcopy(H5T_IEEE_F32LE); break;
      case 3: fz_close(&type); type = H5Tcopy(H5T_STD_I8LE); break;
      case 4: ndim = ndim == 1 ? 2 : 1; break;
      case 5: ndim = 3; dims[2] = fdp_range(f, 0, 3); break;
      case 6: dims[0] = fdp_range(f, 0, 70); break;
      default: dims[ndim - 1] = dims[ndim - 1] + 1 - 2 * (fdp_u8(f) & 1); break;
    }
  }
  size_t count = 1;
  for (int d = 0; d < ndim; d++) count *= (size_t)dims[d];
  if (count > 4096) goto done;
  space = H5Screate_simple(ndim, dims, NULL);
  ds = space >= 0 && type >= 0 ? H5Dcreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT,
                                             H5P_DEFAULT)
                               : H5I_INVALID_HID;
  if (ds < 0 || count == 0) goto done;
  vals = malloc(count * sizeof *vals);
  if (vals == NULL) goto done;
  for (size_t k = 0; k < count; k++)
    vals[k] = (fdp_u8(f) & 15) == 15 ? fdp_double(f) : value(f, k, ctx);
  if (H5Tget_class(type) == H5T_INTEGER) { /* through int64: HDF5 clips out-of-range values */
    int64_t *iv = malloc(count * sizeof *iv);
    if (iv != NULL) {
      for (size_t k = 0; k < count; k++)
        iv[k] = isfinite(vals[k]) && fabs(vals[k]) < 9e18 ? (int64_t)vals[k] : INT64_MAX;
      (void)H5Dwrite(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, iv);
      free(iv);
    }
  } else {
    (void)H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, vals);
  }
done:
  free(vals);
  fz_close(&ds);
  fz_close(&space);
  fz_close(&type);
}

/* A fresh file at path (truncated); H5I_INVALID_HID on failure. */
static inline hid_t fz_create(const char *path) {
  return H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
}

/* MQ_FUZZ_RAW=1: the input is the file itself. */
static inline int fz_raw(void) {
  const char *r = getenv("MQ_FUZZ_RAW");
  return r != NULL && r[0] == '1';
}

/* The recipe's file: <TMPDIR or /tmp>/mq_fuzz_<pid><suffix>, built by build(f, file). */
static inline const char *fz_build(const uint8_t *data, size_t size, const char *suffix,
                                   void (*build)(fdp *f, hid_t file)) {
  static char path[512];
  if (fz_raw()) return mq_fuzz_file(data, size, suffix);
  const char *dir = getenv("TMPDIR");
  snprintf(path, sizeof path, "%s/mq_fuzz_%ld%s", dir && *dir ? dir : "/tmp", (long)getpid(),
           suffix);
  hid_t file = fz_create(path);
  if (file < 0) return NULL;
  fdp f = {data, size};
  build(&f, file);
  return H5Fclose(file) < 0 ? NULL : path;
}

#endif
