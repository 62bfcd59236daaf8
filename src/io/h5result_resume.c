/* Resuming an interrupted `quantize` (h5result.h): the partial file is checked on rank 0 with
 * the serial driver (is it ours, complete, the same settings?), the verdict is broadcast, and
 * then every rank opens it with the MPI-IO driver for appending. Layers count as written only
 * with their last attribute layer_complete = 1 (write_layer flushes after it). */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/mem.h"
#include "core/status.h"
#include "io/h5common.h"
#include "io/h5result.h"
#include "io/h5result_internal.h"

/* The first space-separated "name=value" of a and b that differ. */
static void first_difference(const char *a, const char *b, char *ta, char *tb, size_t len) {
  while (*a || *b) {
    size_t na = strcspn(a, " "), nb = strcspn(b, " ");
    if (na != nb || strncmp(a, b, na) != 0) {
      snprintf(ta, len, "%.*s", (int)na, a);
      snprintf(tb, len, "%.*s", (int)nb, b);
      return;
    }
    a += na + (a[na] == ' ');
    b += nb + (b[nb] == ' ');
  }
  snprintf(ta, len, "?");
  snprintf(tb, len, "?");
}

/* Rank 0: what is at path. A malformed format, resume_key or complete attribute (not a
 * string or not an integer, more than one element) is MQ_EINPUT. */
static mq_status inspect(const char *path, const char *key, mq_resume_state *state,
                         mq_error *err) {
  mq_status st = MQ_OK;
  char *format = NULL, *found = NULL;
  int64_t complete = 0;
  int present = 0, has_complete = 0;
  struct stat sb;
  mq_h5_obj root = {H5I_INVALID_HID, path, "/"};
  *state = MQ_RESUME_NONE;
  if (stat(path, &sb) != 0) return MQ_OK;
  if (!S_ISREG(sb.st_mode)) MQ_FAIL(err, MQ_EUSAGE, "%s: --resume: not a regular file", path);
  root.id = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (root.id < 0)
    MQ_FAIL(err, MQ_EUSAGE, "%s: --resume: not readable as HDF5 (damaged by the interruption?); "
            "remove it to start over", path);
  MQ_CHECK(mq__h5_attr_string(&root, "format", &format, &present, err));
  if (format != NULL && strcmp(format, "mpiquant") == 0)
    MQ_CHECK(mq__h5_attr_string(&root, "resume_key", &found, &present, err));
  if (found == NULL || found[0] == '\0')
    MQ_FAIL(err, MQ_EUSAGE, "%s: --resume: not a result file of mpiquant quantize", path);
  if (strcmp(found, key) != 0) {
    char file_tok[128], run_tok[128];
    first_difference(found, key, file_tok, run_tok, sizeof file_tok);
    MQ_FAIL(err, MQ_EUSAGE, "%s: --resume: written with other settings (%s; this run: %s)", path,
            file_tok, run_tok);
  }
  MQ_CHECK(mq__h5_attr_i64(&root, "complete", &complete, &has_complete, err));
  *state = has_complete && complete == 1 ? MQ_RESUME_COMPLETE : MQ_RESUME_PARTIAL;
cleanup:
  mq_free(found);
  mq_free(format);
  mq__h5_close(&root.id);
  return st;
}

mq_status mq_h5_result_open_resume(MPI_Comm comm, const char *path, const char *key,
                                   mq_h5_result **out, mq_resume_state *state, mq_error *err) {
  mq_status st = MQ_OK;
  int rank = 0, verdict[2] = {MQ_OK, MQ_RESUME_NONE};
  mq_h5_quiet quiet;
  mq__h5_quiet_begin(&quiet);
  *out = NULL;
  MPI_Comm_rank(comm, &rank);
  if (rank == 0) {
    mq_resume_state s;
    verdict[0] = (int)inspect(path, key, &s, err);
    verdict[1] = (int)s;
  }
  MPI_Bcast(verdict, 2, MPI_INT, 0, comm);
  st = (mq_status)verdict[0];
  *state = (mq_resume_state)verdict[1];
  /* abort() keeps a resumed file (created = 0): it holds the progress */
  if (st == MQ_OK && *state == MQ_RESUME_PARTIAL) st = mq__h5_result_open(comm, path, 1, out, err);
  mq__h5_quiet_end(&quiet);
  return st;
}

int mq_h5_result_layer_done(const mq_h5_result *rf, const char *name) {
  int64_t v = 0;
  int found = 0;
  mq_error ignored;
  mq_h5_quiet quiet;
  mq__h5_quiet_begin(&quiet);
  mq_error_clear(&ignored);
  mq_h5_obj g = {H5I_INVALID_HID, rf->path, "/layers"}; /* messages are dropped here */
  if (H5Lexists(rf->layers, name, H5P_DEFAULT) > 0) g.id = H5Gopen2(rf->layers, name, H5P_DEFAULT);
  /* a malformed layer_complete counts as not written: the group is replaced */
  if (g.id >= 0 && mq__h5_attr_i64(&g, "layer_complete", &v, &found, &ignored) != MQ_OK) found = 0;
  mq__h5_close(&g.id);
  mq__h5_quiet_end(&quiet);
  return found && v == 1;
}

mq_status mq_h5_result_read_layer(const mq_h5_result *rf, const char *name, int bits,
                                  mq_layer_result *res, mq_error *err) {
  mq_h5_quiet quiet;
  mq__h5_quiet_begin(&quiet);
  mq_status st = mq__h5_layer_read(rf->layers, rf->path, name, bits, res, err);
  mq__h5_quiet_end(&quiet);
  return st;
}

mq_status mq_h5_result_clear_model(mq_h5_result *rf, mq_error *err) {
  mq_status st = MQ_OK;
  if (H5Lexists(rf->file, "model", H5P_DEFAULT) > 0 && H5Ldelete(rf->file, "model", H5P_DEFAULT) < 0)
    st = mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "%s: cannot replace /model", rf->path);
  MQ_AGREE(rf->comm, st);
cleanup:
  return st;
}
