/* Outputs that appear whole or not at all: a directory built in a staging folder beside its
 * target and renamed into place (export), and small files written under a temporary name and
 * renamed (--json). Local and serial: one rank writes.
 *
 * A directory output (`export --out DIR`):
 *   mq_outdir_begin   creates `<parent>/.<name>.tmp.<pid>` (the parent must exist; an existing
 *                     target must be a directory, and empty unless force);
 *   ...               the caller writes its files into od.tmp;
 *   mq_outdir_commit  renames an existing target to `<parent>/.<name>.old.<pid>`, the staging
 *                     folder to the target, then removes the old folder whole (a failed second
 *                     rename puts the old folder back);
 *   mq_outdir_abort   removes the staging folder and its contents (after a failure; only
 *                     frees after commit).
 * So a failed export leaves the target as it was (absent, or the old folder), never an empty
 * or half-written folder. A run killed by a signal can leave a `.<name>.tmp.<pid>` folder,
 * which no later run reads. */
#ifndef MQ_IO_OUTDIR_H
#define MQ_IO_OUTDIR_H

#include <stddef.h>

#include "mpiquant.h"

typedef struct mq_outdir {
  char *target; /* as given, trailing slashes dropped (mq_alloc'd) */
  char *tmp;    /* the staging folder (mq_alloc'd); NULL once committed or removed */
} mq_outdir;

mq_status mq_outdir_begin(const char *target, int force, mq_outdir *od, mq_error *err);
mq_status mq_outdir_commit(mq_outdir *od, mq_error *err);
/* Accepts a zeroed struct; zeroes it. err (may be NULL): a failure whose message names a file
 * of the staging folder is prefixed with the target, so the error line names what the user
 * asked for ("DIR: DIR/../.DIR.tmp.123/model.safetensors: write failed: ..."). */
void mq_outdir_abort(mq_outdir *od, mq_error *err);

/* Writes data[len] to path through `<dir>/.<name>.tmp.<pid>`: written, fsync'ed, renamed over
 * path. MQ_EFAIL "<path>: cannot write: <errno>" (the temporary file is removed). */
mq_status mq_write_file_atomic(const char *path, const void *data, size_t len, mq_error *err);

#endif
